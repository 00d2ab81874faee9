package jobs

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestJobsCRUD(t *testing.T) {
	h := newHarness(t)
	byShard := usersOnEveryShard(t, h, authn.Client, "eu-west", 2)
	owner, other := byShard["eu-west-1"][0], byShard["eu-west-2"][0]
	neighbour := byShard["eu-west-1"][1] // same shard as owner
	faraway := h.CreateUser(t, authn.Client, "us-east")
	freelancer := h.CreateUser(t, authn.Freelancer, "eu-west")

	var job Job
	t.Run("create", func(t *testing.T) {
		r := h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: owner.Token, Body: map[string]any{
			"title": "  Build a Go API  ", "description": `<p>We need <b>help</b></p><script>alert(1)</script>`,
			"skills": []string{" Go ", "go", "PostgreSQL"}, "budget_min": 1000, "budget_max": 2500.5, "currency": "eur", "remote": false,
		}})
		if r.Status != http.StatusCreated {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r.JSON(t, &job)
		m := r.Map(t)
		if job.OwnerID != owner.ID || job.ID.Kind() != shardkey.KindJob || job.ID.KeyspaceID() != owner.KSID ||
			job.Title != "Build a Go API" || job.Description != "<p>We need <b>help</b></p>" ||
			strings.Join(job.Skills, ",") != "go,postgresql" || *job.BudgetMin != 100000 || *job.BudgetMax != 250050 ||
			job.Currency != "EUR" || job.Remote || job.Status != StatusOpen || job.CreatedAt.IsZero() {
			t.Fatalf("created %+v", job)
		}
		if m["budget_max"] != 2500.5 || !strings.HasSuffix(m["created_at"].(string), "Z") || !strings.HasSuffix(m["updated_at"].(string), "Z") {
			t.Fatalf("JSON %s", r.Body)
		}
		if loc := r.Header.Get("Location"); loc != "/api/v1/jobs/"+job.ID.String() {
			t.Fatalf("Location %q", loc)
		}
		// Defaults, and an open budget.
		j := postJob(t, h, owner, map[string]any{"title": "Minimal"})
		if j.Currency != "USD" || !j.Remote || j.BudgetMin != nil || j.BudgetMax != nil || len(j.Skills) != 0 || j.Description != "" {
			t.Fatalf("defaults %+v", j)
		}
		if !strings.Contains(string(h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/jobs/" + j.ID.String()}).Body), `"budget_min":null`) {
			t.Fatal("an open budget is not null in JSON")
		}
	})

	t.Run("create failures", func(t *testing.T) {
		big := `{"title": "x", "description": "` + strings.Repeat("a", 1<<20) + `"}`
		for name, c := range map[string]struct {
			region string
			req    apitest.Request
			status int
			code   string
			field  string
		}{
			"freelancer":       {"eu-west", apitest.Request{Token: freelancer.Token, Body: map[string]any{"title": "x"}}, 403, "forbidden", ""},
			"no token":         {"eu-west", apitest.Request{Body: map[string]any{"title": "x"}}, 401, "unauthenticated", ""},
			"bad token":        {"eu-west", apitest.Request{Token: "x.y.z", Body: map[string]any{"title": "x"}}, 401, "unauthenticated", ""},
			"bad JSON":         {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x"`}, 400, "invalid_request", ""},
			"not an object":    {"eu-west", apitest.Request{Token: owner.Token, Body: `["x"]`}, 400, "invalid_request", ""},
			"two values":       {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x"} {}`}, 400, "invalid_request", ""},
			"empty body":       {"eu-west", apitest.Request{Token: owner.Token, Body: ``}, 400, "invalid_request", ""},
			"unknown field":    {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "owner_id": "y"}`}, 400, "invalid_request", "owner_id"},
			"status on create": {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "status": "closed"}`}, 400, "invalid_request", "status"},
			"wrong type":       {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "budget_min": "10"}`}, 400, "invalid_request", "budget_min"},
			"blank title":      {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": " "}`}, 400, "invalid_request", "title"},
			"long title":       {"eu-west", apitest.Request{Token: owner.Token, Body: map[string]any{"title": strings.Repeat("t", MaxTitle+1)}}, 400, "invalid_request", "title"},
			"budget order":     {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "budget_min": 5, "budget_max": 1}`}, 400, "invalid_request", "budget_min"},
			"budget decimals":  {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "budget_max": 0.001}`}, 400, "invalid_request", "budget_max"},
			"negative budget":  {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "budget_min": -3}`}, 400, "invalid_request", "budget_min"},
			"currency":         {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "currency": "EURO"}`}, 400, "invalid_request", "currency"},
			"skill":            {"eu-west", apitest.Request{Token: owner.Token, Body: `{"title": "x", "skills": ["go", ""]}`}, 400, "invalid_request", "skills.1"},
			"oversized body":   {"eu-west", apitest.Request{Token: owner.Token, Body: big}, 413, "request_too_large", ""},
			"not JSON":         {"eu-west", apitest.Request{Token: owner.Token, Body: `title=x`, Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}, 415, "unsupported_media_type", ""},
			"other region":     {"us-east", apitest.Request{Token: owner.Token, Body: map[string]any{"title": "x"}}, 421, "wrong_region", ""},
		} {
			t.Run(name, func(t *testing.T) {
				c.req.Method, c.req.Path = "POST", "/api/v1/jobs/"
				r := h.Do(t, c.region, c.req)
				if r.Status != c.status || r.ErrorCode() != c.code {
					t.Fatalf("%d %s, want %d %s", r.Status, r.Body, c.status, c.code)
				}
				if c.field != "" && !strings.Contains(string(r.Body), `"`+c.field+`":`) {
					t.Fatalf("no problem named %s: %s", c.field, r.Body)
				}
				if c.status == 421 && r.Header.Get(wire.ReplayRegion) != "eu-west" {
					t.Fatalf("replay header %q", r.Header.Get(wire.ReplayRegion))
				}
			})
		}
		// Nothing was written by the failures.
		var n int
		routed, _ := h.Pools.Route(owner.KSID)
		if err := routed.Pool.QueryRow(context.Background(), `SELECT count(*) FROM core.jobs WHERE ksid = $1 AND owner_id = $2`,
			owner.KSID.Bytes(), owner.ID.Bytes()).Scan(&n); err != nil || n != 2 {
			t.Fatalf("owner has %d jobs (%v), want the 2 created", n, err)
		}
	})

	t.Run("read", func(t *testing.T) {
		r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/jobs/" + job.ID.String()})
		var got Job
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r.JSON(t, &got)
		if got.ID != job.ID || got.Title != job.Title || !got.CreatedAt.Equal(job.CreatedAt) {
			t.Fatalf("read %+v, created %+v", got, job)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/job/" + job.ID.String()}); r.Status != 404 {
			t.Fatalf("typo path: %d", r.Status)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/jobs/" + job.ID.String(), Token: faraway.Token}); r.Status != 200 {
			t.Fatalf("the /api alias, with someone else's token: %d", r.Status)
		}
		// Asked in another region, the node answers with the replay hint.
		r = h.Do(t, "ap-south", apitest.Request{Method: "GET", Path: "/api/v1/jobs/" + job.ID.String()})
		if r.Status != 421 || r.Header.Get(wire.ReplayRegion) != "eu-west" || r.ErrorCode() != "wrong_region" {
			t.Fatalf("other region: %d %s", r.Status, r.Body)
		}
		for name, path := range notFoundIDs(t, h, job, owner, other) {
			if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/jobs/" + path}); r.Status != 404 || r.ErrorCode() != "not_found" {
				t.Errorf("%s (%s): %d %s", name, path, r.Status, r.Body)
			}
		}
	})

	t.Run("update", func(t *testing.T) {
		path := "/api/v1/jobs/" + job.ID.String()
		for _, u := range []apitest.User{other, neighbour} {
			r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Token: u.Token, Body: map[string]any{"title": "mine now"}})
			if r.Status != 404 || r.ErrorCode() != "not_found" {
				t.Fatalf("someone else's PATCH: %d %s", r.Status, r.Body)
			}
		}
		if r := h.Do(t, "us-east", apitest.Request{Method: "PATCH", Path: path, Token: faraway.Token, Body: map[string]any{"title": "x"}}); r.Status != 421 {
			t.Fatalf("PATCH in the wrong region: %d %s", r.Status, r.Body)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Body: map[string]any{"title": "x"}}); r.Status != 401 {
			t.Fatalf("PATCH without a token: %d", r.Status)
		}
		time.Sleep(2 * time.Millisecond) // so that updated_at moves
		r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Token: owner.Token,
			Body: `{"status": "closed", "budget_min": null, "skills": ["Rust", "rust"], "description": "<i>x</i><img src=x onerror=alert(1)>"}`})
		var got Job
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r.JSON(t, &got)
		if got.Status != StatusClosed || got.BudgetMin != nil || *got.BudgetMax != 250050 || strings.Join(got.Skills, ",") != "rust" ||
			got.Title != job.Title || got.Currency != "EUR" || strings.Contains(got.Description, "onerror") || !got.UpdatedAt.After(job.UpdatedAt) {
			t.Fatalf("patched %+v", got)
		}
		// A bound that crosses the stored other bound is a field error, and changes nothing.
		r = h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Token: owner.Token, Body: `{"budget_min": 999999, "title": "changed"}`})
		if r.Status != 400 || !strings.Contains(string(r.Body), `"budget_min"`) {
			t.Fatalf("crossing budgets: %d %s", r.Status, r.Body)
		}
		for body, field := range map[string]string{
			`{"title": null}`: "title", `{"status": "gone"}`: "status", `{"nope": 1}`: "nope", `{"currency": 12}`: "currency",
		} {
			if r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Token: owner.Token, Body: body}); r.Status != 400 ||
				!strings.Contains(string(r.Body), `"`+field+`"`) {
				t.Errorf("%s: %d %s", body, r.Status, r.Body)
			}
		}
		r = h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Token: owner.Token, Body: `{}`})
		var same Job
		r.JSON(t, &same)
		if r.Status != 200 || same.Title != job.Title || same.Status != StatusClosed {
			t.Fatalf("empty patch: %d %s", r.Status, r.Body)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Token: other.Token, Body: `{}`}); r.Status != 404 {
			t.Fatalf("someone else's empty patch: %d", r.Status)
		}
		for name, p := range notFoundIDs(t, h, job, owner, other) {
			if r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/jobs/" + p, Token: owner.Token, Body: `{"title": "x"}`}); r.Status != 404 {
				t.Errorf("PATCH %s: %d %s", name, r.Status, r.Body)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		path := "/api/v1/jobs/" + job.ID.String()
		if r := h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path, Token: other.Token}); r.Status != 404 {
			t.Fatalf("someone else's DELETE: %d %s", r.Status, r.Body)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path}); r.Status != 401 {
			t.Fatalf("DELETE without a token: %d", r.Status)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path, Token: owner.Token}); r.Status != 204 || len(r.Body) != 0 {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: path}); r.Status != 404 {
			t.Fatalf("GET after DELETE: %d", r.Status)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path, Token: owner.Token}); r.Status != 404 {
			t.Fatalf("DELETE twice: %d", r.Status)
		}
		for name, p := range notFoundIDs(t, h, job, owner, other) {
			if r := h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: "/api/v1/jobs/" + p, Token: owner.Token}); r.Status != 404 {
				t.Errorf("DELETE %s: %d %s", name, r.Status, r.Body)
			}
		}
	})
}

// notFoundIDs are job paths that name no job the node can show: malformed, of another kind, unknown on
// the owner's shard, unknown on the other shard of the region, of a region that does not exist.
func notFoundIDs(t *testing.T, h *apitest.Harness, job Job, owner, other apitest.User) map[string]string {
	t.Helper()
	mk := func(k shardkey.KeyspaceID) string {
		id, err := h.IDs.New(shardkey.KindJob, k)
		if err != nil {
			t.Fatal(err)
		}
		return id.String()
	}
	s := job.ID.String()
	return map[string]string{
		"malformed":              "job_nope",
		"bad characters":         s[:len(s)-1] + "U",
		"upper case":             strings.ToUpper(s),
		"a user ID":              owner.ID.String(),
		"unknown, owner's shard": mk(owner.KSID),
		"unknown, other shard":   mk(other.KSID),
		"no such region":         mk(shardkey.KeyspaceID(0x99) << 56),
	}
}

func TestListJobs(t *testing.T) {
	h := newHarness(t)
	byShard := usersOnEveryShard(t, h, authn.Client, "eu-west", 1)
	owner, other := byShard["eu-west-1"][0], byShard["eu-west-2"][0]
	faraway := h.CreateUser(t, authn.Client, "ap-south")
	freelancer := h.CreateUser(t, authn.Freelancer, "eu-west")

	var created []Job
	for i := 0; i < 7; i++ {
		created = append(created, postJob(t, h, owner, map[string]any{"title": "Job " + string(rune('A'+i))}))
	}
	postJob(t, h, other, map[string]any{"title": "Not the owner's"})
	// Close two: the owner still sees them, others do not.
	for _, j := range []Job{created[1], created[4]} {
		r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/jobs/" + j.ID.String(), Token: owner.Token, Body: `{"status": "closed"}`})
		if r.Status != 200 {
			t.Fatalf("close: %d %s", r.Status, r.Body)
		}
	}

	walk := func(u apitest.User, query string, limit string) []Job {
		t.Helper()
		var all []Job
		cursor := ""
		for page := 0; page < 20; page++ {
			path := "/api/v1/jobs/?limit=" + limit + query
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: path, Token: u.Token})
			var pg struct {
				Items      []Job  `json:"items"`
				NextCursor string `json:"next_cursor"`
			}
			if r.Status != 200 {
				t.Fatalf("%s: %d %s", path, r.Status, r.Body)
			}
			r.JSON(t, &pg)
			all = append(all, pg.Items...)
			if pg.NextCursor == "" {
				return all
			}
			cursor = pg.NextCursor
		}
		t.Fatal("no end of pages")
		return nil
	}
	want := func(js ...Job) []shardkey.ID {
		out := make([]shardkey.ID, 0, len(js))
		for i := len(js) - 1; i >= 0; i-- { // newest first
			out = append(out, js[i].ID)
		}
		return out
	}
	same := func(got []Job, want []shardkey.ID) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i].ID != want[i] {
				return false
			}
		}
		return true
	}
	if got := walk(owner, "", "3"); !same(got, want(created...)) {
		t.Fatalf("own jobs in pages of 3: %d jobs %v", len(got), got)
	}
	if got := walk(owner, "&owner_id="+owner.ID.String(), "100"); !same(got, want(created...)) {
		t.Fatalf("own jobs by owner_id: %d", len(got))
	}
	open := []Job{created[0], created[2], created[3], created[5], created[6]}
	for _, u := range []apitest.User{other, freelancer} {
		if got := walk(u, "&owner_id="+owner.ID.String(), "2"); !same(got, want(open...)) {
			t.Fatalf("someone else's view, pages of 2: %d jobs", len(got))
		}
	}
	if got := walk(freelancer, "", "5"); len(got) != 0 {
		t.Fatalf("a freelancer's own jobs: %d", len(got))
	}
	// A cursor belongs to its listing.
	r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/jobs/?limit=1", Token: owner.Token})
	var pg struct {
		NextCursor string `json:"next_cursor"`
	}
	r.JSON(t, &pg)
	for name, c := range map[string]struct {
		region, path string
		token        string
		status       int
		field        string
	}{
		"cursor of another listing": {"eu-west", "/api/v1/jobs/?owner_id=" + owner.ID.String() + "&cursor=" + pg.NextCursor, other.Token, 400, "cursor"},
		"garbage cursor":            {"eu-west", "/api/v1/jobs/?cursor=abc", owner.Token, 400, "cursor"},
		"limit 0":                   {"eu-west", "/api/v1/jobs/?limit=0", owner.Token, 400, "limit"},
		"limit 101":                 {"eu-west", "/api/v1/jobs/?limit=101", owner.Token, 400, "limit"},
		"malformed owner":           {"eu-west", "/api/v1/jobs/?owner_id=usr_x", owner.Token, 400, "owner_id"},
		"a job ID as owner":         {"eu-west", "/api/v1/jobs/?owner_id=" + created[0].ID.String(), owner.Token, 400, "owner_id"},
		"owner in another region":   {"eu-west", "/api/v1/jobs/?owner_id=" + faraway.ID.String(), owner.Token, 421, ""},
		"own jobs, wrong region":    {"us-east", "/api/v1/jobs/", owner.Token, 421, ""},
		"no token":                  {"eu-west", "/api/v1/jobs/", "", 401, ""},
	} {
		r := h.Do(t, c.region, apitest.Request{Method: "GET", Path: c.path, Token: c.token})
		if r.Status != c.status || (c.field != "" && !strings.Contains(string(r.Body), `"`+c.field+`"`)) {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
		if c.status == 421 && r.Header.Get(wire.ReplayRegion) == "" {
			t.Errorf("%s: no replay header", name)
		}
	}
	// An owner in another region is listed by that region's node.
	if r := h.Do(t, "ap-south", apitest.Request{Method: "GET", Path: "/api/v1/jobs/?owner_id=" + faraway.ID.String(), Token: owner.Token}); r.Status != 200 ||
		!strings.Contains(string(r.Body), `"items":[]`) {
		t.Fatalf("listing in the owner's region: %d %s", r.Status, r.Body)
	}
}

// A client that has not verified their email may not post jobs (authn.CapPostJob).
func TestUnverifiedCannotPostJobs(t *testing.T) {
	h := newHarness(t)
	c := h.CreateUnverifiedUser(t, authn.Client, "us-east")
	r := h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: c.Token,
		Body: map[string]any{"title": "Scam job", "description": "send money"}})
	if r.Status != http.StatusForbidden || r.ErrorCode() != "email_unverified" {
		t.Fatalf("unverified client posts a job: %d %s", r.Status, r.Body)
	}
	r = h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/jobs/", Token: c.Token})
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	r.JSON(t, &page)
	if r.Status != http.StatusOK || len(page.Items) != 0 {
		t.Errorf("jobs of the refused client: %d %s", r.Status, r.Body)
	}
}
