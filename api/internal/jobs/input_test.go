package jobs

import (
	"encoding/json"
	"errors"
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestParseCents(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  error
	}{
		{"0", 0, nil},
		{"-0", 0, nil},
		{"0.0", 0, nil},
		{"1", 100, nil},
		{"1500.5", 150050, nil},
		{"1500.05", 150005, nil},
		{"1500.50", 150050, nil},
		{"12.340", 1234, nil},
		{"1e3", 100000, nil},
		{"1.5E+2", 15000, nil},
		{"1234e-2", 1234, nil},
		{"9999999999.99", MaxCents, nil},
		{"0e999999", 0, nil},
		{"10000000000", 0, errAmountTooBig},
		{"1e10", 0, errAmountTooBig},
		{"1e999999", 0, errAmountTooBig},
		{"1e9999999", 0, errAmountTooBig},
		{"1e-9999999", 0, errTooPrecise},
		{"0.0e-9999999", 0, nil},
		{"1e-", 0, errNotNumber},
		{"1e-x", 0, errNotNumber},
		{"0.001", 0, errTooPrecise},
		{"1e-3", 0, errTooPrecise},
		{"1e-999999", 0, errTooPrecise},
		{"-1", 0, errNegative},
		{"-0.01", 0, errNegative},
		{"", 0, errNotNumber},
		{"-", 0, errNotNumber},
		{"1.", 0, errNotNumber},
		{".5", 0, errNotNumber},
		{"01", 0, errNotNumber},
		{"1e", 0, errNotNumber},
		{"1e+", 0, errNotNumber},
		{"1x", 0, errNotNumber},
		{"NaN", 0, errNotNumber},
	}
	for _, c := range cases {
		got, err := parseCents(c.in)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("parseCents(%q) = %d, %v; want %d, %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestMoneyJSONRoundTrips(t *testing.T) {
	for _, c := range []struct {
		cents int64
		text  string
	}{{0, "0"}, {5, "0.05"}, {50, "0.5"}, {150050, "1500.5"}, {150005, "1500.05"}, {100, "1"}, {MaxCents, "9999999999.99"}} {
		b, err := json.Marshal(Money(c.cents))
		if err != nil || string(b) != c.text {
			t.Errorf("Marshal(%d) = %s, %v; want %s", c.cents, b, err, c.text)
		}
		var m Money
		if err := json.Unmarshal(b, &m); err != nil || int64(m) != c.cents {
			t.Errorf("Unmarshal(%s) = %d, %v", b, m, err)
		}
	}
}

func decodeCreate(t *testing.T, body string) (jobInput, map[string]string, error) {
	t.Helper()
	var req createRequest
	if err := rest.DecodeBytes(strings.NewReader(body), &req); err != nil {
		return jobInput{}, nil, err
	}
	in, bad := req.normalize(richtext.New())
	return in, bad, nil
}

func TestCreateNormalizes(t *testing.T) {
	in, bad, err := decodeCreate(t, `{"title": "  Go developer ", "description": "<p>Hi</p><script>x()</script>",
		"skills": [" Go ", "go", "PostgreSQL", "Distributed   Systems"], "budget_min": 100, "budget_max": 2500.5, "currency": "eur"}`)
	if err != nil || len(bad) > 0 {
		t.Fatalf("err %v, problems %v", err, bad)
	}
	if *in.Title != "Go developer" || *in.Description != "<p>Hi</p>" || *in.Currency != "EUR" || !*in.Remote ||
		strings.Join(in.Skills, "|") != "go|postgresql|distributed systems" || *in.BudgetMin != 10000 || *in.BudgetMax != 250050 {
		t.Fatalf("normalised to %+v", in)
	}
	in, bad, _ = decodeCreate(t, `{"title": "x"}`)
	if len(bad) > 0 || *in.Currency != "USD" || !*in.Remote || in.Skills == nil || len(in.Skills) != 0 ||
		in.BudgetMin != nil || in.BudgetMax != nil || *in.Description != "" {
		t.Fatalf("defaults: %+v %v", in, bad)
	}
}

func TestCreateFieldErrors(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	many := make([]string, skills.MaxCount+1)
	for i := range many {
		many[i] = "s" + strconv.Itoa(i)
	}
	manyJSON, _ := json.Marshal(many)
	cases := []struct {
		name, body, field string
	}{
		{"no title", `{}`, "title"},
		{"null title", `{"title": null}`, "title"},
		{"blank title", `{"title": "   "}`, "title"},
		{"long title", `{"title": "` + long(MaxTitle+1) + `"}`, "title"},
		{"control in title", `{"title": "a\u0007b"}`, "title"},
		{"long description", `{"title": "x", "description": "` + long(MaxDescription+1) + `"}`, "description"},
		{"NUL in description", `{"title": "x", "description": "a\u0000b"}`, "description"},
		{"empty skill", `{"title": "x", "skills": ["go", " "]}`, "skills.1"},
		{"long skill", `{"title": "x", "skills": ["` + long(skills.MaxLen+1) + `"]}`, "skills.0"},
		{"comma in skill", `{"title": "x", "skills": ["a,b"]}`, "skills.0"},
		{"too many skills", `{"title": "x", "skills": ` + string(manyJSON) + `}`, "skills"},
		{"negative budget", `{"title": "x", "budget_min": -1}`, "budget_min"},
		{"three decimals", `{"title": "x", "budget_max": 1.005}`, "budget_max"},
		{"huge budget", `{"title": "x", "budget_max": 1e12}`, "budget_max"},
		{"min above max", `{"title": "x", "budget_min": 10, "budget_max": 5}`, "budget_min"},
		{"currency too long", `{"title": "x", "currency": "EURO"}`, "currency"},
		{"unknown currency", `{"title": "x", "currency": "ZZZ"}`, "currency"},
		{"test currency", `{"title": "x", "currency": "XTS"}`, "currency"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, bad, err := decodeCreate(t, c.body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if bad[c.field] == "" {
				t.Fatalf("problems %v, want one for %s", bad, c.field)
			}
		})
	}
}

func TestCreateDecodeErrors(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`{"title": 1}`, "title"},
		{`{"title": "x", "budget_min": "12"}`, "budget_min"},
		{`{"title": "x", "budget_min": true}`, "budget_min"},
		{`{"title": "x", "skills": "go"}`, "skills"},
		{`{"title": "x", "remote": "yes"}`, "remote"},
		{`{"title": "x", "country": 5}`, "country"},
		{`{"title": "x", "status": "open"}`, "status"}, // not a create field
		{`{"title": "x", "owner_id": "usr_x"}`, "owner_id"},
	} {
		_, _, err := decodeCreate(t, c.body)
		var e *apierror.Error
		if !errors.As(err, &e) || e.Status != 400 || e.Fields[c.field] == "" {
			t.Errorf("%s: %v (fields %v), want a 400 naming %s", c.body, err, fieldsOf(err), c.field)
		}
	}
}

func fieldsOf(err error) map[string]string {
	var e *apierror.Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

func TestPatchNormalizes(t *testing.T) {
	san := richtext.New()
	patch := func(body string) (jobInput, map[string]string) {
		t.Helper()
		var req patchRequest
		if err := rest.DecodeBytes(strings.NewReader(body), &req); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return req.normalize(san)
	}
	in, bad := patch(`{}`)
	if len(bad) > 0 || !in.empty() {
		t.Fatalf("empty patch: %+v %v", in, bad)
	}
	in, bad = patch(`{"budget_min": null, "status": "closed"}`)
	if len(bad) > 0 || !in.BudgetMinSet || in.BudgetMin != nil || in.BudgetMaxSet || *in.Status != "closed" || in.Title != nil {
		t.Fatalf("patch: %+v %v", in, bad)
	}
	in, bad = patch(`{"skills": []}`)
	if len(bad) > 0 || in.Skills == nil || len(in.Skills) != 0 {
		t.Fatalf("clearing skills: %+v %v", in, bad)
	}
	for body, field := range map[string]string{
		`{"title": null}`:                    "title",
		`{"skills": null}`:                   "skills",
		`{"remote": null}`:                   "remote",
		`{"status": "deleted"}`:              "status",
		`{"status": null}`:                   "status",
		`{"budget_min": 9, "budget_max": 1}`: "budget_min",
		`{"currency": "usd1"}`:               "currency",
		`{"description": null}`:              "description",
		`{"title": "` + strings.Repeat("é", MaxTitle+1) + `"}`: "title",
	} {
		if _, bad := patch(body); bad[field] == "" {
			t.Errorf("%s: problems %v, want %s", body, bad, field)
		}
	}
}

func TestIsCurrency(t *testing.T) {
	for c, want := range map[string]bool{"USD": true, "EUR": true, "JPY": true, "ZWL": true, "AED": true, "XTS": false,
		"XAU": false, "usd": false, "US": false, "USDD": false, "SD ": false, " US": false, "D A": false, "": false} {
		if got := isCurrency(c); got != want {
			t.Errorf("isCurrency(%q) = %v", c, got)
		}
	}
}

func TestMergeRanked(t *testing.T) {
	g := shardkey.NewGenerator(nil, nil)
	id := func(k shardkey.KeyspaceID) shardkey.ID {
		v, err := g.New(shardkey.KindJob, k)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b, c, d := id(0x40<<56|1), id(0x40<<56|2), id(0x41<<56|3), id(0x20<<56|4)
	item := func(r float32, i shardkey.ID) SearchItem { return SearchItem{Job: Job{ID: i}, Rank: r} }
	parts := [][]SearchItem{
		{item(0.9, a), item(0.5, b)},
		{item(0.9, c), item(0.1, d)},
		{item(0.5, b)}, // the same job seen on two shards mid-move
	}
	got, more := mergeRanked(parts, 3)
	want := []shardkey.ID{c, a, b} // 0.9 tie: larger ID first
	if c.String() < a.String() {
		want = []shardkey.ID{a, c, b}
	}
	if !more || len(got) != 3 {
		t.Fatalf("got %d items, more %v", len(got), more)
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Fatalf("item %d = %s, want %s", i, got[i].ID, want[i])
		}
	}
	if got, more := mergeRanked(parts, 4); more || len(got) != 4 {
		t.Fatalf("limit 4: %d items, more %v (the repeat must not count)", len(got), more)
	}
	if got, more := mergeRanked(nil, 3); more || len(got) != 0 {
		t.Fatalf("nothing: %v %v", got, more)
	}
}

func TestParseSearch(t *testing.T) {
	manySkills := "last"
	for i := 0; i < MaxSearchSkills; i++ {
		manySkills += ",s" + strconv.Itoa(i)
	}
	for _, c := range []struct {
		query string
		field string // "" when valid
	}{
		{"q=golang", ""},
		{"skills=Go,%20PostgreSQL,,go", ""},
		{"q=golang&skills=go&limit=100&scope=global", ""},
		{"", "q"},
		{"q=%20%20", "q"},
		{"skills=,,", "q"},
		{"q=" + strings.Repeat("a", MaxQuery+1), "q"},
		{"q=a%00b", "q"},
		{"q=%ff", "q"},
		{"skills=%ff", "skills"},
		{"q=x&limit=0", "limit"},
		{"q=x&limit=101", "limit"},
		{"q=x&limit=ten", "limit"},
		{"q=x&scope=world", "scope"},
		{"q=x&cursor=!!", "cursor"},
		{"skills=" + manySkills, "skills"},
	} {
		v, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = parseSearch(v)
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%q: %v", c.query, err)
		case c.field != "" && fieldsOf(err)[c.field] == "":
			t.Errorf("%q: %v (%v), want a problem with %s", c.query, err, fieldsOf(err), c.field)
		}
	}
	p, err := parseSearch(url.Values{"skills": {" Go ,postgresql,GO"}})
	if err != nil || strings.Join(p.Skills, ",") != "go,postgresql" || p.Limit != rest.DefaultLimit || p.Global {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestSearchCursorIsBoundToItsQuery(t *testing.T) {
	g := shardkey.NewGenerator(nil, nil)
	id, _ := g.New(shardkey.KindJob, 0x40<<56)
	first, err := parseSearch(url.Values{"q": {"golang"}, "scope": {"global"}})
	if err != nil {
		t.Fatal(err)
	}
	pg := first.page([]SearchItem{{Job: Job{ID: id}, Rank: 0.0607927}}, true, nil)
	if pg.NextCursor == "" || pg.Partial || pg.FailedShards == nil {
		t.Fatalf("page %+v", pg)
	}
	next, err := parseSearch(url.Values{"q": {"golang"}, "scope": {"global"}, "cursor": {pg.NextCursor}})
	if err != nil || !next.HasAfter || next.After.ID != id || next.After.Rank != 0.0607927 {
		t.Fatalf("next page: %+v %v", next, err)
	}
	if v := next.values(); v.Get("cursor") != pg.NextCursor || v.Get("scope") != "global" || v.Get("q") != "golang" {
		t.Fatalf("values for a peer: %v", v)
	}
	for _, other := range []url.Values{
		{"q": {"rust"}, "scope": {"global"}},
		{"q": {"golang"}},
		{"q": {"golang"}, "skills": {"go"}, "scope": {"global"}},
	} {
		other.Set("cursor", pg.NextCursor)
		if _, err := parseSearch(other); fieldsOf(err)["cursor"] == "" {
			t.Errorf("cursor of another search (%v) accepted: %v", other, err)
		}
	}
	for _, bad := range []searchCursor{
		{V: 2, R: 1, ID: id, H: first.fp},
		{V: 1, R: -1, ID: id, H: first.fp},
		{V: 1, R: float32(math.Inf(1)), ID: id, H: first.fp},
	} {
		c := rest.EncodeCursor(bad)
		if _, err := parseSearch(url.Values{"q": {"golang"}, "scope": {"global"}, "cursor": {c}}); err == nil && c != "" {
			t.Errorf("cursor %+v accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.ShardTimeout = 0 },
		func(c *Config) { c.Concurrency = 0 },
		func(c *Config) { c.PeerTimeout = -1 },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestCountryOfAnOnSiteJob(t *testing.T) {
	in, bad, err := decodeCreate(t, `{"title": "On site", "remote": false, "country": " de "}`)
	if err != nil || len(bad) != 0 || in.Country == nil || *in.Country != "DE" || !in.CountrySet {
		t.Fatalf("country de: %v %v %+v", err, bad, in)
	}
	for _, c := range []string{`"XX"`, `"DEU"`, `"UK"`, `""`} {
		if _, bad, err := decodeCreate(t, `{"title": "On site", "country": `+c+`}`); err != nil || bad["country"] == "" {
			t.Errorf("country %s: %v %v", c, err, bad)
		}
	}
	// A patch may clear it: null is unknown.
	var req patchRequest
	if err := rest.DecodeBytes(strings.NewReader(`{"country": null}`), &req); err != nil {
		t.Fatal(err)
	}
	in, bad = req.normalize(richtext.New())
	if len(bad) != 0 || !in.CountrySet || in.Country != nil || in.empty() {
		t.Fatalf("country null: %v %+v", bad, in)
	}
}
