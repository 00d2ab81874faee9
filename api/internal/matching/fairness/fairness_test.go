package fairness

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"
)

// people builds a list from a compact description: one group letter per entry, in rank order,
// with relevance falling from len down to 1.
func people(attr, groups string) []Entry {
	out := make([]Entry, len(groups))
	for i, g := range groups {
		out[i] = Entry{ID: fmt.Sprintf("%s%d", string(g), i), Groups: map[string]string{attr: string(g)},
			Relevance: float64(len(groups) - i)}
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func nearMap(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
		return
	}
	for g, w := range want {
		if v, ok := got[g]; !ok || !near(v, w) {
			t.Errorf("%s = %v, want %v", what, got, want)
			return
		}
	}
}

func TestPositionWeight(t *testing.T) {
	for _, c := range []struct {
		rank int
		want float64
	}{{1, 1}, {2, 1 / math.Log2(3)}, {3, 0.5}, {7, 1.0 / 3}, {10, 1 / math.Log2(11)}} {
		if got := PositionWeight(c.rank); !near(got, c.want) {
			t.Errorf("PositionWeight(%d) = %v, want %v", c.rank, got, c.want)
		}
	}
	for r := 1; r < 100; r++ {
		if PositionWeight(r+1) >= PositionWeight(r) {
			t.Fatalf("weight does not fall from rank %d to %d", r, r+1)
		}
	}
}

func TestExposure(t *testing.T) {
	w1, w2, w3, w4 := 1.0, 1/math.Log2(3), 0.5, 1/math.Log2(5)
	for _, c := range []struct {
		name string
		list []Entry
		want map[string]float64
	}{
		{"empty", nil, map[string]float64{}},
		{"one group", people("country", "AAA"), map[string]float64{"A": 1}},
		{"ABA", people("country", "ABA"), map[string]float64{"A": (w1 + w3) / (w1 + w2 + w3), "B": w2 / (w1 + w2 + w3)}},
		{"first place is worth more", people("country", "ABBB"),
			map[string]float64{"A": w1 / (w1 + w2 + w3 + w4), "B": (w2 + w3 + w4) / (w1 + w2 + w3 + w4)}},
		{"undeclared", []Entry{{ID: "x"}, {ID: "y", Groups: map[string]string{"country": "DE"}}, {ID: "z", Groups: map[string]string{"country": ""}}},
			map[string]float64{Undeclared: (w1 + w3) / (w1 + w2 + w3), "DE": w2 / (w1 + w2 + w3)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			nearMap(t, "Exposure", Exposure(c.list, "country"), c.want)
		})
	}
	// Another attribute than the one the entries carry: everyone is undeclared.
	nearMap(t, "Exposure of an absent attribute", Exposure(people("country", "AB"), "gender"), map[string]float64{Undeclared: 1})
}

func TestExposureSharesSumToOne(t *testing.T) {
	r := newRand(1)
	for i := 0; i < 2000; i++ {
		list := randomList(r, 1+r.IntN(60), 1+r.IntN(6))
		var sum float64
		for g, s := range Exposure(list, "g") {
			if s <= 0 || s > 1 {
				t.Fatalf("share of %s is %v", g, s)
			}
			sum += s
		}
		if !near(sum, 1) {
			t.Fatalf("shares sum to %v for %d entries", sum, len(list))
		}
	}
}

func TestImpactRatio(t *testing.T) {
	type m = map[string]int
	type f = map[string]float64
	for _, c := range []struct {
		name     string
		cfg      Config
		selected m
		pool     m
		ratios   f
		flagged  []string
	}{
		{"balanced", Config{}, m{"A": 5, "B": 5}, m{"A": 50, "B": 50}, f{"A": 1, "B": 1}, nil},
		{"proportional to an uneven pool", Config{}, m{"A": 6, "B": 3, "C": 1}, m{"A": 60, "B": 30, "C": 10},
			f{"A": 1, "B": 1, "C": 1}, nil},
		{"one group left out", Config{}, m{"A": 10}, m{"A": 50, "B": 50}, f{"A": 1, "B": 0}, []string{"B"}},
		{"four fifths exactly is not flagged", Config{}, m{"A": 25, "B": 20}, m{"A": 50, "B": 50}, f{"A": 1, "B": 0.8}, nil},
		{"just under four fifths is flagged", Config{}, m{"A": 25, "B": 19}, m{"A": 50, "B": 50}, f{"A": 1, "B": 0.76}, []string{"B"}},
		{"a stricter threshold", Config{Threshold: 0.9}, m{"A": 25, "B": 21}, m{"A": 50, "B": 50}, f{"A": 1, "B": 0.84}, []string{"B"}},
		{"several flagged, sorted", Config{}, m{"C": 10}, m{"A": 40, "B": 40, "C": 40}, f{"A": 0, "B": 0, "C": 1}, []string{"A", "B"}},
		{"small pool reported, not flagged", Config{}, m{"A": 20}, m{"A": 40, "C": 8}, f{"A": 1, "C": 0}, nil},
		{"small pool flagged with a smaller minimum", Config{MinPool: 5}, m{"A": 20}, m{"A": 40, "C": 8}, f{"A": 1, "C": 0}, []string{"C"}},
		// A group of three, all shown, would make everyone else look left out if it set the rate.
		{"small group is not the yardstick", Config{}, m{"A": 10, "B": 10, "C": 3}, m{"A": 100, "B": 100, "C": 3},
			f{"A": 1, "B": 1, "C": 10}, nil},
		// Top 10 from a pool that is 15% B: 1.5 is B's fair count, 1 is as close as a list gets.
		{"rounding shortfall is not flagged", Config{}, m{"A": 9, "B": 1}, m{"A": 85, "B": 15},
			f{"A": 1, "B": (1.0 / 15) / (9.0 / 85)}, nil},
		{"below what rounding allows is flagged", Config{}, m{"A": 10}, m{"A": 85, "B": 15}, f{"A": 1, "B": 0}, []string{"B"}},
		{"nobody selected", Config{}, m{}, m{"A": 50, "B": 50}, f{"A": 1, "B": 1}, nil},
		{"nothing at all", Config{}, nil, nil, f{}, nil},
		{"selected but not in the pool", Config{}, m{"A": 5, "X": 2}, m{"A": 50}, f{"A": 1, "X": 10}, nil},
		{"no group large enough to judge", Config{}, m{"A": 1}, m{"A": 3, "B": 3}, f{"A": 1, "B": 0}, nil},
		{"negative counts count as none", Config{}, m{"A": 5, "B": -4}, m{"A": 50, "B": 50, "C": -3}, f{"A": 1, "B": 0}, []string{"B"}},
		{"counts whose product overflows", Config{}, m{"A": 3e9, "B": 2e9}, m{"A": 4e9, "B": 4e9}, f{"A": 1, "B": 2.0 / 3}, []string{"B"}},
		{"empty pool group left out", Config{}, m{"A": 5, "B": 5}, m{"A": 50, "B": 50, "Z": 0}, f{"A": 1, "B": 1}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ratios, flagged := c.cfg.ImpactRatio(c.selected, c.pool)
			nearMap(t, "ratios", ratios, c.ratios)
			if flagged == nil || !slices.Equal(flagged, c.flagged) && len(flagged)+len(c.flagged) > 0 {
				t.Errorf("flagged = %#v, want %v", flagged, c.flagged)
			}
		})
	}
	// The package function is the default config's.
	r1, f1 := ImpactRatio(map[string]int{"A": 10}, map[string]int{"A": 50, "B": 50})
	r2, f2 := DefaultConfig().ImpactRatio(map[string]int{"A": 10}, map[string]int{"A": 50, "B": 50})
	if !maps.Equal(r1, r2) || !slices.Equal(f1, f2) {
		t.Errorf("ImpactRatio %v %v differs from DefaultConfig's %v %v", r1, f1, r2, f2)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", DefaultConfig(), true},
		{"zero takes defaults", Config{}, true},
		{"threshold 1", Config{Threshold: 1}, true},
		{"threshold above 1", Config{Threshold: 1.2}, false},
		{"negative threshold", Config{Threshold: -0.1}, false},
		{"NaN threshold", Config{Threshold: math.NaN()}, false},
		{"negative min pool", Config{MinPool: -1}, false},
		{"negative smoothing", Config{Smoothing: -1}, false},
		{"infinite smoothing", Config{Smoothing: math.Inf(1)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("Validate() = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

func TestSkewAtK(t *testing.T) {
	type m = map[string]int
	type f = map[string]float64
	for _, c := range []struct {
		name string
		cfg  Config
		list []Entry
		pool m
		k    int
		want f
	}{
		{"in proportion", Config{}, people("g", "ABABABABAB"), m{"A": 50, "B": 50}, 10, f{"A": 0, "B": 0}},
		{"all A from an even pool", Config{}, people("g", "AAAAAAAAAABBBB"), m{"A": 50, "B": 50}, 10,
			f{"A": math.Log((11.0 / 12) / (51.0 / 102)), "B": math.Log((1.0 / 12) / (51.0 / 102))}},
		{"k beyond the list is the list", Config{}, people("g", "AB"), m{"A": 50, "B": 50}, 99, f{"A": 0, "B": 0}},
		{"k 0 is the list", Config{}, people("g", "AB"), m{"A": 50, "B": 50}, 0, f{"A": 0, "B": 0}},
		{"nil pool is the list", Config{}, people("g", "AABB"), nil, 2,
			f{"A": math.Log((3.0 / 4) / (3.0 / 6)), "B": math.Log((1.0 / 4) / (3.0 / 6))}},
		{"a pool group nobody saw", Config{}, people("g", "AB"), m{"A": 10, "B": 10, "C": 10}, 2,
			f{"A": math.Log((2.0 / 5) / (11.0 / 33)), "B": math.Log((2.0 / 5) / (11.0 / 33)), "C": math.Log((1.0 / 5) / (11.0 / 33))}},
		{"less smoothing, further from 0", Config{Smoothing: 0.1}, people("g", "AAAAAAAAAABBBB"), m{"A": 50, "B": 50}, 10,
			f{"A": math.Log((10.1 / 10.2) / (50.1 / 100.2)), "B": math.Log((0.1 / 10.2) / (50.1 / 100.2))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			nearMap(t, "SkewAtK", c.cfg.SkewAtK(c.list, "g", c.pool, c.k), c.want)
		})
	}
	s := SkewAtK(people("g", "AAAAAAAAAABBBB"), "g", map[string]int{"A": 50, "B": 50}, 10)
	if !(s["A"] > 0 && s["B"] < 0) || math.IsInf(s["B"], 0) {
		t.Errorf("skew of an all-A top 10 = %v, want A positive and B negative and finite", s)
	}
}

func TestEvaluateFlagsSkewAndNotBalance(t *testing.T) {
	// Two attributes: country (A/B, even pool) and region (one region for everyone).
	mk := func(groups string) []Entry {
		list := people("country", groups)
		for i := range list {
			list[i].Groups["region"] = "eu"
		}
		return list
	}
	pool := map[string]int{Key("country", "A"): 50, Key("country", "B"): 50, Key("region", "eu"): 100}
	attrs := []string{"country", "region"}

	skewed := Evaluate(mk("AAAAAAAAAABBBBBBBBBB"), pool, attrs, 10)
	if !slices.Equal(skewed.Flagged, []string{"country=B"}) {
		t.Errorf("skewed list flagged %v, want [country=B]", skewed.Flagged)
	}
	if skewed.K != 10 || skewed.Groups["country"]["A"] != 10 || skewed.Groups["country"]["B"] != 0 {
		t.Errorf("groups = %v (k %d)", skewed.Groups, skewed.K)
	}
	if v, ok := skewed.Exposure["country"]["B"]; !ok || v != 0 {
		t.Errorf("a pool group not shown must appear with exposure 0: %v", skewed.Exposure)
	}
	if skewed.ImpactRatio["country"]["B"] != 0 || skewed.Skew["country"]["B"] >= 0 {
		t.Errorf("impact %v skew %v", skewed.ImpactRatio, skewed.Skew)
	}

	balanced := Evaluate(mk("ABABABABABABABABABAB"), pool, attrs, 10)
	if len(balanced.Flagged) != 0 || balanced.Flagged == nil {
		t.Errorf("balanced list flagged %#v", balanced.Flagged)
	}
	nearMap(t, "balanced impact", balanced.ImpactRatio["country"], map[string]float64{"A": 1, "B": 1})
	for _, r := range []Report{skewed, balanced} {
		for attr, shares := range r.Exposure {
			var sum float64
			for _, s := range shares {
				sum += s
			}
			if !near(sum, 1) {
				t.Errorf("%s exposure sums to %v", attr, sum)
			}
		}
	}
	// Balanced yet not alternating: B's first place is late, but each gets five of ten.
	late := Evaluate(mk("AAAAABBBBB"), pool, attrs, 10)
	if len(late.Flagged) != 0 || late.Exposure["country"]["A"] <= late.Exposure["country"]["B"] {
		t.Errorf("AAAAABBBBB: flagged %v, exposure %v", late.Flagged, late.Exposure)
	}
	// A nil pool: the whole list is the pool, its top k what was shown.
	self := Evaluate(mk("AAAAAAAAAABBBBBBBBBB"), nil, attrs, 10)
	if !slices.Equal(self.Flagged, []string{"country=B"}) {
		t.Errorf("nil pool: flagged %v", self.Flagged)
	}
	// A pool with nothing for an attribute falls back to the list for that attribute only.
	part := Evaluate(mk("AAAAAAAAAABBBBBBBBBB"), map[string]int{Key("region", "eu"): 20}, attrs, 10)
	if !slices.Equal(part.Flagged, []string{"country=B"}) || part.Groups["region"]["eu"] != 10 {
		t.Errorf("partial pool: %+v", part)
	}
}

func TestEvaluateJSON(t *testing.T) {
	r := Evaluate(people("country", "AAB"), map[string]int{Key("country", "A"): 20, Key("country", "B"): 20}, []string{"country"}, 0)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"exposure", "flagged", "groups", "impact_ratio", "k", "relevance_cost", "reranked", "skew_at_k"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("JSON keys %v, want %v", keys, want)
	}
	if string(got["flagged"]) != "[]" || string(got["reranked"]) != "false" {
		t.Errorf("flagged %s reranked %s", got["flagged"], got["reranked"])
	}
	// An empty list still encodes (no NaN, no null maps).
	if b, err := json.Marshal(Evaluate(nil, nil, []string{"country"}, 10)); err != nil {
		t.Errorf("empty list: %v", err)
	} else if want := `{"k":0,"groups":{"country":{}},"exposure":{"country":{}},"impact_ratio":{"country":{}},"skew_at_k":{"country":{}},"flagged":[],"reranked":false,"relevance_cost":0}`; string(b) != want {
		t.Errorf("empty list encodes as %s, want %s", b, want)
	}
}

func TestKeyAndPools(t *testing.T) {
	if k := Key("country", "DE"); k != "country=DE" {
		t.Errorf("Key = %q", k)
	}
	for _, c := range []struct {
		key, attr, group string
		ok               bool
	}{
		{"country=DE", "country", "DE", true},
		{"pronoun=they=them", "pronoun", "they=them", true},
		{"country=", "country", "", true},
		{"nokey", "nokey", "", false},
	} {
		a, g, ok := SplitKey(c.key)
		if a != c.attr || g != c.group || ok != c.ok {
			t.Errorf("SplitKey(%q) = %q %q %v", c.key, a, g, ok)
		}
	}
	list := []Entry{
		{ID: "1", Groups: map[string]string{"country": "DE", "region": "eu"}},
		{ID: "2", Groups: map[string]string{"country": "FR", "region": "eu"}},
		{ID: "3", Groups: map[string]string{"country": "DE"}},
	}
	pool := Pool(list, []string{"country", "region"})
	want := map[string]int{"country=DE": 2, "country=FR": 1, "region=eu": 2, "region=" + Undeclared: 1}
	if !maps.Equal(pool, want) {
		t.Errorf("Pool = %v, want %v", pool, want)
	}
	if got := PoolFor(pool, "country"); !maps.Equal(got, map[string]int{"DE": 2, "FR": 1}) {
		t.Errorf("PoolFor(country) = %v", got)
	}
	if got := PoolFor(pool, "gender"); got != nil {
		t.Errorf("PoolFor(gender) = %v, want nil", got)
	}
	if got := Counts(list, "region"); !maps.Equal(got, map[string]int{"eu": 2, Undeclared: 1}) {
		t.Errorf("Counts = %v", got)
	}
}
