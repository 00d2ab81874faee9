package fairness

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestDay(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 12, 1, 23, 59, 59, 0, time.UTC), "2026-12-01"},
		{time.Date(2026, 12, 2, 0, 30, 0, 0, berlin), "2026-12-01"}, // still the 1st in UTC
		{time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "2027-01-01"},
	} {
		if got := Day(c.at); got != c.want {
			t.Errorf("Day(%v) = %s, want %s", c.at, got, c.want)
		}
	}
}

func TestRows(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	list := people("country", "AABAB")
	pool := map[string]int{Key("country", "A"): 30, Key("country", "B"): 20, Key("country", "C"): 10}
	rows := Rows("eu", at, list, pool, []string{"country", "country"}, 4)
	w := PositionWeight
	want := []Row{
		{Region: "eu", Day: "2026-12-01", Attr: "country", Group: "A", Exposure: w(1) + w(2) + w(4), Selected: 3, Pool: 30},
		{Region: "eu", Day: "2026-12-01", Attr: "country", Group: "B", Exposure: w(3), Selected: 1, Pool: 20},
		{Region: "eu", Day: "2026-12-01", Attr: "country", Group: "C", Exposure: 0, Selected: 0, Pool: 10},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("Rows =\n%+v\nwant\n%+v", rows, want)
	}
	// Without a pool the list is the pool; a group beyond the top k is in the pool, not selected.
	rows = Rows("eu", at, list, nil, []string{"country"}, 2)
	want = []Row{
		{Region: "eu", Day: "2026-12-01", Attr: "country", Group: "A", Exposure: w(1) + w(2), Selected: 2, Pool: 3},
		{Region: "eu", Day: "2026-12-01", Attr: "country", Group: "B", Exposure: 0, Selected: 0, Pool: 2},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("Rows without a pool =\n%+v\nwant\n%+v", rows, want)
	}
}

func TestSum(t *testing.T) {
	rows := []Row{
		{Region: "us", Day: "d2", Attr: "country", Group: "A", Exposure: 1, Selected: 1, Pool: 10},
		{Region: "eu", Day: "d1", Attr: "country", Group: "B", Exposure: 0.5, Selected: 2, Pool: 5},
		{Region: "eu", Day: "d1", Attr: "country", Group: "B", Exposure: 0.25, Selected: 1, Pool: 5},
		{Region: "eu", Day: "d1", Attr: "country", Group: "A", Exposure: 2, Selected: 3, Pool: 7},
	}
	want := []Row{
		{Region: "eu", Day: "d1", Attr: "country", Group: "A", Exposure: 2, Selected: 3, Pool: 7},
		{Region: "eu", Day: "d1", Attr: "country", Group: "B", Exposure: 0.75, Selected: 3, Pool: 10},
		{Region: "us", Day: "d2", Attr: "country", Group: "A", Exposure: 1, Selected: 1, Pool: 10},
	}
	if got := Sum(rows); !slices.Equal(got, want) {
		t.Errorf("Sum =\n%+v\nwant\n%+v", got, want)
	}
	if got := Sum(nil); len(got) != 0 {
		t.Errorf("Sum(nil) = %v", got)
	}
}

// TestAggregate serves lists for two regions over two days: one region's day is balanced, the
// other region's first day leaves B out. Only that day is flagged, and summing the period (Day
// blanked) still flags it.
func TestAggregate(t *testing.T) {
	day1 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	day2 := day1.AddDate(0, 0, 1)
	pool := map[string]int{Key("country", "A"): 50, Key("country", "B"): 50}
	attrs := []string{"country"}
	var rows []Row
	for i := 0; i < 20; i++ {
		rows = append(rows, Rows("eu", day1, people("country", "ABABABABAB"), pool, attrs, 10)...)
		rows = append(rows, Rows("us", day1, people("country", "AAAAAAAAAB"), pool, attrs, 10)...)
		rows = append(rows, Rows("us", day2, people("country", "BABABABABA"), pool, attrs, 10)...)
	}
	sums := Aggregate(rows)
	if len(sums) != 3 {
		t.Fatalf("%d summaries, want 3: %+v", len(sums), sums)
	}
	type key struct{ region, day string }
	byKey := map[key]Summary{}
	for _, s := range sums {
		byKey[key{s.Region, s.Day}] = s
		var total float64
		for _, v := range s.Exposure["country"] {
			total += v
		}
		if !near(total, 1) {
			t.Errorf("%s %s exposure sums to %v", s.Region, s.Day, total)
		}
	}
	if got := []key{{sums[0].Region, sums[0].Day}, {sums[1].Region, sums[1].Day}, {sums[2].Region, sums[2].Day}}; !slices.Equal(got,
		[]key{{"eu", "2026-12-01"}, {"us", "2026-12-01"}, {"us", "2026-12-02"}}) {
		t.Errorf("summaries in order %v", got)
	}
	eu := byKey[key{"eu", "2026-12-01"}]
	if len(eu.Flagged) != 0 || eu.Groups["country"]["B"] != 100 || eu.Pool["country"]["B"] != 1000 {
		t.Errorf("eu: %+v", eu)
	}
	nearMap(t, "eu impact", eu.ImpactRatio["country"], map[string]float64{"A": 1, "B": 1})
	us1 := byKey[key{"us", "2026-12-01"}]
	if !slices.Equal(us1.Flagged, []string{"country=B"}) {
		t.Errorf("us day 1 flagged %v", us1.Flagged)
	}
	nearMap(t, "us day 1 impact", us1.ImpactRatio["country"], map[string]float64{"A": 1, "B": 1.0 / 9})
	if us1.Skew["country"]["B"] >= 0 || us1.Skew["country"]["A"] <= 0 {
		t.Errorf("us day 1 skew %v", us1.Skew)
	}
	if us2 := byKey[key{"us", "2026-12-02"}]; len(us2.Flagged) != 0 {
		t.Errorf("us day 2 flagged %v", us2.Flagged)
	}

	// The period: blank the day and sum again. Over both days us is 20·9+20·5 A and 20·1+20·5 B.
	period := slices.Clone(rows)
	for i := range period {
		period[i].Day = ""
	}
	totals := Aggregate(period)
	if len(totals) != 2 || totals[1].Region != "us" || totals[1].Day != "" {
		t.Fatalf("period: %+v", totals)
	}
	nearMap(t, "us period impact", totals[1].ImpactRatio["country"], map[string]float64{"A": 1, "B": 120.0 / 280})
	if !slices.Equal(totals[1].Flagged, []string{"country=B"}) {
		t.Errorf("us period flagged %v", totals[1].Flagged)
	}
	b, err := json.Marshal(totals[0])
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(b, &keys)
	if got := slices.Sorted(maps.Keys(keys)); !slices.Equal(got, []string{"exposure", "flagged", "groups", "impact_ratio", "pool", "region", "skew"}) {
		t.Errorf("summary JSON keys %v (day omitted for a period)", got)
	}
}

// TestAggregateSeesWhatListsRoundAway: every list gives the 15% group one place in ten, as close to
// its 1.5 as a list can come, so no list is flagged; but it is always rounded down, and the
// region's day, summing a hundred lists, is.
func TestAggregateSeesWhatListsRoundAway(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	pool := map[string]int{Key("country", "A"): 85, Key("country", "B"): 15}
	list := people("country", "AAAABAAAAA")
	if r := Evaluate(list, pool, []string{"country"}, 10); len(r.Flagged) != 0 {
		t.Fatalf("one list flagged %v", r.Flagged)
	}
	var rows []Row
	for i := 0; i < 100; i++ {
		rows = append(rows, Rows("eu", at, list, pool, []string{"country"}, 10)...)
	}
	s := Aggregate(rows)
	if len(s) != 1 || !slices.Equal(s[0].Flagged, []string{"country=B"}) {
		t.Errorf("aggregate: %+v", s)
	}
	// With a smaller threshold (a config of the region) it passes.
	if s := (Config{Threshold: 0.6}).Aggregate(rows); len(s[0].Flagged) != 0 {
		t.Errorf("threshold 0.6 flagged %v", s[0].Flagged)
	}
}
