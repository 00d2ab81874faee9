package profiles

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/hiring/side"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/reviews"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// start runs three regions serving the profiles routes with the real reviews service as the rating
// source (and its routes, to write reviews).
func start(t *testing.T) *apitest.Harness {
	t.Helper()
	return apitest.New(t, apitest.Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		rv, err := reviews.New(a, reviews.DefaultConfig(), side.NewSides(a))
		if err != nil {
			t.Fatal(err)
		}
		svc, err := New(a, rv)
		if err != nil {
			t.Fatal(err)
		}
		return append(svc.Routes(), rv.Routes()...)
	}})
}

func expect(t *testing.T, name string, r *apitest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || (code != "" && r.ErrorCode() != code) {
		t.Errorf("%s: got %d %s, want %d %s", name, r.Status, r.Body, status, code)
	}
}

func newID(t *testing.T, h *apitest.Harness, kind shardkey.Kind, k shardkey.KeyspaceID) shardkey.ID {
	t.Helper()
	id, err := h.IDs.New(kind, k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func userOnOtherShard(t *testing.T, h *apitest.Harness, role authn.Role, region string, other apitest.User) apitest.User {
	t.Helper()
	want, _ := h.Pools.Route(other.KSID)
	for range 64 {
		u := h.CreateUser(t, role, region)
		if rt, _ := h.Pools.Route(u.KSID); rt.Shard != want.Shard {
			return u
		}
	}
	t.Fatal("no user landed on another shard")
	return apitest.User{}
}

func TestOwnProfile(t *testing.T) {
	h := start(t)
	u := h.CreateUser(t, authn.Freelancer, "eu-west")
	get := func(tok string) *apitest.Response {
		return h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/users/profile", Token: tok})
	}
	put := func(tok string, body any) *apitest.Response {
		return h.Do(t, "eu-west", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: tok, Body: body})
	}

	// No row yet (registration would have made one): the empty profile.
	r := get(u.Token)
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"headline":"","bio":"","skills":[],"hourly_rate":null,"country":null,"available":false}` {
		t.Fatalf("profile without a row: %d %s", r.Status, r.Body)
	}
	// The first PUT creates the row.
	r = put(u.Token, `{"headline":"  Go engineer ","bio":"<p>Hi <a href=\"https://x.example\">me</a></p><script>x()</script>",
		"skills":[" Go ","go","PostgreSQL","  Distributed   Systems "],"hourly_rate":45.5,"country":"de","available":true}`)
	if r.Status != 200 {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
	want := `{"headline":"Go engineer","bio":"<p>Hi <a href=\"https://x.example\" rel=\"nofollow noopener\" target=\"_blank\">me</a></p>",` +
		`"skills":["go","postgresql","distributed systems"],"hourly_rate":45.50,"country":"DE","available":true}`
	if got := strings.TrimSpace(string(r.Body)); got != want {
		t.Fatalf("put answer:\n got %s\nwant %s", got, want)
	}
	if got := strings.TrimSpace(string(get(u.Token).Body)); got != want {
		t.Fatalf("read back:\n got %s\nwant %s", got, want)
	}
	// PUT replaces: what is absent is cleared.
	r = put(u.Token, map[string]any{"headline": "Only this"})
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"headline":"Only this","bio":"","skills":[],"hourly_rate":null,"country":null,"available":false}` {
		t.Fatalf("replace: %d %s", r.Status, r.Body)
	}
	before := string(get(u.Token).Body)

	many := make([]string, skills.MaxCount+1)
	for i := range many {
		many[i] = fmt.Sprintf("skill %d", i)
	}
	fifty := append([]string{}, many[:skills.MaxCount]...)
	fifty = append(fifty, "SKILL 0", "skill   1") // duplicates after normalising do not count
	if r := put(u.Token, map[string]any{"skills": fifty, "hourly_rate": 99999999.99}); r.Status != 200 {
		t.Errorf("50 distinct skills and the largest rate: %d %s", r.Status, r.Body)
	}
	if r := put(u.Token, map[string]any{"headline": strings.Repeat("ü", MaxHeadline), "bio": strings.Repeat("b", MaxBio), "hourly_rate": 0, "country": "US"}); r.Status != 200 {
		t.Errorf("at the limits: %d %s", r.Status, r.Body)
	}
	if r := put(u.Token, map[string]any{"headline": "Only this"}); r.Status != 200 {
		t.Fatal(r.Status)
	}

	for name, c := range map[string]struct {
		body  any
		field string
	}{
		"headline too long":      {map[string]any{"headline": strings.Repeat("h", MaxHeadline+1)}, "headline"},
		"headline with a tab":    {map[string]any{"headline": "a\tb"}, "headline"},
		"bio too long":           {map[string]any{"bio": strings.Repeat("b", MaxBio+1)}, "bio"},
		"bio too long once safe": {map[string]any{"bio": strings.Repeat("<", MaxBio)}, "bio"},
		"51 skills":              {map[string]any{"skills": many}, "skills"},
		"skill too long":         {map[string]any{"skills": []string{strings.Repeat("s", skills.MaxLen+1)}}, "skills.0"},
		"empty skill":            {map[string]any{"skills": []string{"go", "  "}}, "skills.1"},
		"skill with control":     {map[string]any{"skills": []string{"a\u0007b"}}, "skills.0"},
		"skill with a comma":     {map[string]any{"skills": []string{"go", "go,sql"}}, "skills.1"},
		"skills not an array":    {map[string]any{"skills": "go"}, "skills"},
		"unknown country":        {map[string]any{"country": "XX"}, "country"},
		"reserved country":       {map[string]any{"country": "EU"}, "country"},
		"three-letter country":   {map[string]any{"country": "USA"}, "country"},
		"empty country":          {map[string]any{"country": ""}, "country"},
		"negative rate":          {map[string]any{"hourly_rate": -1}, "hourly_rate"},
		"three decimals":         {`{"hourly_rate": 10.125}`, "hourly_rate"},
		"rate too large":         {`{"hourly_rate": 100000000}`, "hourly_rate"},
		"rate as a string":       {`{"hourly_rate": "12.50"}`, "hourly_rate"},
		"huge exponent":          {`{"hourly_rate": 1e999999999}`, "hourly_rate"},
		"available not a bool":   {`{"available": "yes"}`, "available"},
		"unknown field":          {map[string]any{"email": "x@example.test"}, "email"},
	} {
		r := put(u.Token, c.body)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" || !strings.Contains(string(r.Body), `"`+c.field+`":`) {
			t.Errorf("%s: %d %s, want 400 naming %s", name, r.Status, r.Body, c.field)
		}
	}
	// Decimal spellings that mean a two-place value are accepted.
	for in, out := range map[string]string{`1e2`: "100.00", `12.50`: "12.50", `0.1`: "0.10", `7`: "7.00", `1.230`: "1.23"} {
		r := put(u.Token, `{"hourly_rate": `+in+`}`)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"hourly_rate":`+out+`,`) {
			t.Errorf("rate %s: %d %s, want %s", in, r.Status, r.Body, out)
		}
	}
	if r := put(u.Token, map[string]any{"headline": "Only this"}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	expect(t, "bad JSON", put(u.Token, `{"headline": "x"`), 400, "invalid_request")
	expect(t, "not an object", put(u.Token, `"x"`), 400, "invalid_request")
	expect(t, "empty body", put(u.Token, ``), 400, "invalid_request")
	expect(t, "oversized body", put(u.Token, `{"bio": "`+strings.Repeat("b", rest.MaxBodyBytes)+`"}`), 413, "")
	expect(t, "not JSON", h.Do(t, "eu-west", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: u.Token, Body: "x",
		Header: http.Header{"Content-Type": {"text/plain"}}}), 415, "")
	expect(t, "put without a token", put("", map[string]any{}), 401, "unauthenticated")
	expect(t, "put with an invalid token", put("a.b.c", map[string]any{}), 401, "unauthenticated")
	expect(t, "get without a token", get(""), 401, "unauthenticated")
	expect(t, "get with an invalid token", get("a.b.c"), 401, "unauthenticated")
	if got := string(get(u.Token).Body); got != before {
		t.Fatalf("failed requests changed the profile:\n%s\nwas\n%s", got, before)
	}
	// The caller's data lives in its home region; another region's node points there.
	for _, method := range []string{"GET", "PUT"} {
		r := h.Do(t, "us-east", apitest.Request{Method: method, Path: "/api/v1/users/profile", Token: u.Token, Body: map[string]any{}})
		if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "eu-west" {
			t.Errorf("%s in another region: %d %s", method, r.Status, r.Body)
		}
	}
	// Two users on one shard never see each other's profile.
	v := h.CreateUser(t, authn.Freelancer, "eu-west")
	if got := strings.TrimSpace(string(get(v.Token).Body)); !strings.Contains(got, `"headline":""`) {
		t.Errorf("another user's profile leaked: %s", got)
	}
	// A token that outlived its user: writes are 404, not a server error.
	gone := h.CreateUser(t, authn.Freelancer, "eu-west")
	rt, _ := h.Pools.Route(gone.KSID)
	if _, err := rt.Pool.Exec(context.Background(), `DELETE FROM auth.users WHERE ksid = $1 AND id = $2`, gone.KSID.Bytes(), gone.ID.Bytes()); err != nil {
		t.Fatal(err)
	}
	expect(t, "put for an erased user", put(gone.Token, map[string]any{"headline": "x"}), 404, "not_found")
	expect(t, "patch settings for an erased user", h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/users/settings",
		Token: gone.Token, Body: map[string]any{"locale": "fr"}}), 404, "not_found")
}

func TestPublicProfile(t *testing.T) {
	h := start(t)
	free := h.CreateUser(t, authn.Freelancer, "eu-west")
	client := userOnOtherShard(t, h, authn.Client, "eu-west", free)
	if r := h.Do(t, "eu-west", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: free.Token,
		Body: map[string]any{"headline": "Rust and Go", "skills": []string{"Rust", "Go"}, "hourly_rate": 80, "country": "FR", "available": true}}); r.Status != 200 {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/users/settings", Token: free.Token,
		Body: map[string]any{"timezone": "Europe/Paris"}}); r.Status != 200 {
		t.Fatalf("settings: %d %s", r.Status, r.Body)
	}
	public := func(region, id string) *apitest.Response {
		return h.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/users/" + id + "/profile"})
	}
	r := public("eu-west", free.ID.String())
	if r.Status != 200 {
		t.Fatalf("public profile: %d %s", r.Status, r.Body)
	}
	m := r.Map(t)
	for _, secret := range []string{"email", "settings", "timezone", "notifications", "locale"} {
		if _, ok := m[secret]; ok || strings.Contains(string(r.Body), free.Email) {
			t.Errorf("public profile shows %s: %s", secret, r.Body)
		}
	}
	var p PublicProfile
	r.JSON(t, &p)
	if p.ID != free.ID || p.Name != free.Name || p.Role != "freelancer" || p.Headline != "Rust and Go" ||
		fmt.Sprint(p.Skills) != "[rust go]" || p.HourlyRate.String() != "80.00" || *p.Country != "FR" || !p.Available || p.Rating != (Rating{}) {
		t.Errorf("public profile: %s", r.Body)
	}
	// A user without a profile row has the empty profile, and a rating.
	r = public("eu-west", client.ID.String())
	if r.Status != 200 || !strings.Contains(string(r.Body), `"skills":[],"hourly_rate":null,"country":null,"available":false,"rating":{"count":0,"average":0}`) {
		t.Errorf("profile without a row: %d %s", r.Status, r.Body)
	}

	// The rating follows reviews, through the reviews service's stats.
	for i, rating := range []int{5, 4, 4} {
		author := client
		if i > 0 {
			author = h.CreateUser(t, authn.Client, "eu-west")
		}
		contract := insertCompletedContract(t, h, author, free)
		rr := h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: author.Token,
			Body: map[string]any{"contract_id": contract, "rating": rating}})
		if rr.Status != 201 {
			t.Fatalf("review: %d %s", rr.Status, rr.Body)
		}
	}
	public("eu-west", free.ID.String()).JSON(t, &p)
	if p.Rating != (Rating{Count: 3, Average: 4.33}) {
		t.Errorf("rating after reviews: %+v", p.Rating)
	}

	far := h.CreateUser(t, authn.Freelancer, "ap-south")
	r = public("eu-west", far.ID.String())
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "ap-south" || r.ErrorCode() != "wrong_region" {
		t.Errorf("user of another region: %d %s %v", r.Status, r.Body, r.Header)
	}
	if r := public("ap-south", far.ID.String()); r.Status != 200 {
		t.Errorf("in the user's region: %d %s", r.Status, r.Body)
	}
	unknownRegion, _ := shardkey.MakeKeyspaceID(0x99, 7)
	for name, id := range map[string]string{
		"malformed":          "usr_nope",
		"upper case":         strings.ToUpper(free.ID.String()),
		"a job ID":           insertJob(t, h, client).String(),
		"unknown":            newID(t, h, shardkey.KindUser, shardkey.NewKeyspaceID(0x40, []byte("nobody"))).String(),
		"unknown region":     newID(t, h, shardkey.KindUser, unknownRegion).String(),
		"a real user's ksid": newID(t, h, shardkey.KindUser, free.KSID).String(),
	} {
		expect(t, name, public("eu-west", id), 404, "not_found")
	}
	// A soft-deleted user has no public profile.
	rt, _ := h.Pools.Route(client.KSID)
	if _, err := rt.Pool.Exec(context.Background(), `UPDATE auth.users SET deleted_at = now() WHERE ksid = $1 AND id = $2`, client.KSID.Bytes(), client.ID.Bytes()); err != nil {
		t.Fatal(err)
	}
	expect(t, "deleted user", public("eu-west", client.ID.String()), 404, "not_found")
}

// insertJob writes a job straight into the owner's shard (the jobs package is written elsewhere).
func insertJob(t *testing.T, h *apitest.Harness, owner apitest.User) shardkey.ID {
	t.Helper()
	id := newID(t, h, shardkey.KindJob, owner.KSID)
	rt, err := h.Pools.Route(owner.KSID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Pool.Exec(context.Background(), `INSERT INTO core.jobs (ksid, id, owner_id, title) VALUES ($1, $2, $3, 'A job')`,
		owner.KSID.Bytes(), id.Bytes(), owner.ID.Bytes()); err != nil {
		t.Fatal(err)
	}
	return id
}

// insertCompletedContract writes a completed contract of client and free straight into their shards,
// as the hiring feature keeps it: the contract on the client's, the reference row on the freelancer's.
func insertCompletedContract(t *testing.T, h *apitest.Harness, client, free apitest.User) shardkey.ID {
	t.Helper()
	job := insertJob(t, h, client)
	id := newID(t, h, shardkey.KindContract, client.KSID)
	proposal := newID(t, h, shardkey.KindProposal, free.KSID)
	for _, w := range []struct {
		k   shardkey.KeyspaceID
		sql string
	}{
		{client.KSID, `INSERT INTO core.contracts (ksid, id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status, completed_at)
			VALUES ($1, $2, $3, $4, $5, $6, 50, 'EUR', 'completed', now())`},
		{free.KSID, `INSERT INTO core.contract_refs (ksid, contract_id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status, started_at, completed_at)
			VALUES ($1, $2, $3, $4, $5, $6, 50, 'EUR', 'completed', now(), now())`},
	} {
		rt, err := h.Pools.Route(w.k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.Pool.Exec(context.Background(), w.sql, w.k.Bytes(), id.Bytes(), job.Bytes(), proposal.Bytes(),
			client.ID.Bytes(), free.ID.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func TestSettings(t *testing.T) {
	h := start(t)
	u := h.CreateUser(t, authn.Client, "ap-south")
	get := func(tok string) *apitest.Response {
		return h.Do(t, "ap-south", apitest.Request{Method: "GET", Path: "/api/v1/users/settings", Token: tok})
	}
	patch := func(tok string, body any) *apitest.Response {
		return h.Do(t, "ap-south", apitest.Request{Method: "PATCH", Path: "/api/v1/users/settings", Token: tok, Body: body})
	}
	settings := func(r *apitest.Response) Settings {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("settings: %d %s", r.Status, r.Body)
		}
		var s Settings
		r.JSON(t, &s)
		return s
	}
	defaults := Settings{Locale: "en", Timezone: "UTC", Notifications: defaultNotifications()}
	if s := settings(get(u.Token)); !equalSettings(s, defaults) {
		t.Fatalf("defaults without a row: %+v", s)
	}
	// An empty patch changes nothing and creates nothing.
	if s := settings(patch(u.Token, map[string]any{})); !equalSettings(s, defaults) {
		t.Fatalf("empty patch: %+v", s)
	}
	// The first PATCH creates the row.
	s := settings(patch(u.Token, map[string]any{"locale": "pt-br", "notifications": map[string]any{"product_updates": true}}))
	want := Settings{Locale: "pt-BR", Timezone: "UTC", Notifications: defaultNotifications()}
	want.Notifications[NotifyProductUpdates] = true
	if !equalSettings(s, want) {
		t.Fatalf("first patch: %+v", s)
	}
	// Later patches merge, key by key; null leaves a value alone.
	s = settings(patch(u.Token, map[string]any{"timezone": "Asia/Kolkata", "locale": nil,
		"notifications": map[string]any{"email_reviews": false, "email_messages": nil}}))
	want.Timezone = "Asia/Kolkata"
	want.Notifications[NotifyEmailReviews] = false
	if !equalSettings(s, want) || !equalSettings(settings(get(u.Token)), want) {
		t.Fatalf("merge: %+v", s)
	}
	before := string(get(u.Token).Body)
	for name, c := range map[string]struct {
		body  any
		field string
	}{
		"unknown zone":          {map[string]any{"timezone": "Mars/Olympus_Mons"}, "timezone"},
		"Local":                 {map[string]any{"timezone": "Local"}, "timezone"},
		"empty zone":            {map[string]any{"timezone": ""}, "timezone"},
		"path as a zone":        {map[string]any{"timezone": "../../etc/passwd"}, "timezone"},
		"zone too long":         {map[string]any{"timezone": strings.Repeat("A", 65)}, "timezone"},
		"bad locale":            {map[string]any{"locale": "english please"}, "locale"},
		"locale with extension": {map[string]any{"locale": "en-u-ca-buddhist"}, "locale"},
		"und":                   {map[string]any{"locale": "und"}, "locale"},
		"unknown notification":  {map[string]any{"notifications": map[string]any{"sms_spam": true}}, "notifications.sms_spam"},
		"notification not bool": {`{"notifications": {"email_reviews": "no"}}`, "notifications"},
		"notifications array":   {`{"notifications": [true]}`, "notifications"},
		"unknown field":         {map[string]any{"theme": "dark"}, "theme"},
	} {
		r := patch(u.Token, c.body)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" || !strings.Contains(string(r.Body), `"`+c.field) {
			t.Errorf("%s: %d %s, want 400 naming %s", name, r.Status, r.Body, c.field)
		}
	}
	expect(t, "bad JSON", patch(u.Token, `{`), 400, "invalid_request")
	expect(t, "oversized", patch(u.Token, `{"locale": "`+strings.Repeat("e", rest.MaxBodyBytes)+`"}`), 413, "")
	expect(t, "patch without a token", patch("", map[string]any{}), 401, "unauthenticated")
	expect(t, "patch with an invalid token", patch("x", map[string]any{}), 401, "unauthenticated")
	expect(t, "get without a token", get(""), 401, "unauthenticated")
	expect(t, "get with an invalid token", get("e.e.e"), 401, "unauthenticated")
	if got := string(get(u.Token).Body); got != before {
		t.Fatalf("failed patches changed the settings: %s, was %s", got, before)
	}
	for _, method := range []string{"GET", "PATCH"} {
		r := h.Do(t, "eu-west", apitest.Request{Method: method, Path: "/api/v1/users/settings", Token: u.Token, Body: map[string]any{}})
		if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "ap-south" {
			t.Errorf("%s in another region: %d %s", method, r.Status, r.Body)
		}
	}
	// Another user (same region) still has the defaults.
	v := h.CreateUser(t, authn.Freelancer, "ap-south")
	if s := settings(get(v.Token)); !equalSettings(s, defaults) {
		t.Errorf("another user's settings leaked: %+v", s)
	}
	// Values some other tool stored that this version does not know are ignored, not fatal.
	rt, _ := h.Pools.Route(v.KSID)
	if _, err := rt.Pool.Exec(context.Background(), `INSERT INTO core.settings (ksid, user_id, notifications) VALUES ($1, $2, $3)`,
		v.KSID.Bytes(), v.ID.Bytes(), `{"email_reviews": false, "legacy_flag": true, "product_updates": "maybe"}`); err != nil {
		t.Fatal(err)
	}
	s = settings(get(v.Token))
	want = Settings{Locale: "en", Timezone: "UTC", Notifications: defaultNotifications()}
	want.Notifications[NotifyEmailReviews] = false
	if !equalSettings(s, want) {
		t.Errorf("stored junk: %+v", s)
	}
}

func equalSettings(a, b Settings) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Concurrent PATCHes of different notification keys both land (the merge is one statement).
func TestSettingsConcurrentMerge(t *testing.T) {
	h := start(t)
	u := h.CreateUser(t, authn.Client, "us-east")
	keys := NotificationKinds()
	done := make(chan *apitest.Response, len(keys))
	for _, k := range keys {
		go func() {
			done <- h.Do(t, "us-east", apitest.Request{Method: "PATCH", Path: "/api/v1/users/settings", Token: u.Token,
				Body: map[string]any{"notifications": map[string]any{k: k == NotifyProductUpdates}}})
		}()
	}
	for range keys {
		select {
		case r := <-done:
			if r.Status != 200 {
				t.Fatalf("patch: %d %s", r.Status, r.Body)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("patches did not finish")
		}
	}
	var s Settings
	h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/users/settings", Token: u.Token}).JSON(t, &s)
	for _, k := range keys {
		if s.Notifications[k] != (k == NotifyProductUpdates) {
			t.Errorf("%s = %v after concurrent patches: %+v", k, s.Notifications[k], s.Notifications)
		}
	}
	rt, _ := h.Pools.Route(u.KSID)
	var stored string
	if err := rt.Pool.QueryRow(context.Background(), `SELECT notifications::text FROM core.settings WHERE ksid = $1 AND user_id = $2`,
		u.KSID.Bytes(), u.ID.Bytes()).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.Contains(stored, `"`+k+`"`) {
			t.Errorf("stored %s lacks %s", stored, k)
		}
	}
}
