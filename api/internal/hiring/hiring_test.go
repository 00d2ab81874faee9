package hiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/hiring"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/outbox"
	"github.com/8thdegree/meridian/api/internal/profiles"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// noRatings is a rating source with no reviews: the scores of these tests rest on skills alone.
type noRatings struct{}

func (noRatings) Rating(context.Context, shardkey.ID) (int, float64, error) { return 0, 0, nil }

// env is three regions serving jobs, profiles and hiring, with each region's outbox at hand. No
// delivery task runs: the tests deliver messages themselves, in the order a race between regions
// would, and see what each side does.
type env struct {
	h   *apitest.Harness
	mu  sync.Mutex
	obs map[string]*outbox.Outbox
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{obs: map[string]*outbox.Outbox{}}
	e.h = apitest.New(t, apitest.Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		ob, err := outbox.New(a, outbox.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		pf, err := profiles.New(a, noRatings{})
		if err != nil {
			t.Fatal(err)
		}
		hs, err := hiring.New(a, ob, pf, noRatings{})
		if err != nil {
			t.Fatal(err)
		}
		js, err := jobs.New(a, jobs.DefaultConfig(), jobs.Hooks{Closer: hs})
		if err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		e.obs[a.Region] = ob
		e.mu.Unlock()
		routes := append(pf.Routes(), js.Routes()...)
		return append(routes, hs.Routes()...)
	}})
	return e
}

// deliver applies every undelivered message of kind waiting in region's outbox, as the destination's
// node would, marks it delivered, and returns how many there were.
func (e *env) deliver(t *testing.T, region, kind string) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for _, tgt := range e.h.Pools.Targets(region) {
		rows, err := tgt.Pool.Query(ctx, `SELECT ksid, id, destination, target_ksid, idempotency_key, payload FROM core.outbox
			WHERE kind = $1 AND delivered_at IS NULL ORDER BY created_at`, kind)
		if err != nil {
			t.Fatal(err)
		}
		type msg struct {
			ksid, id []byte
			dest     string
			to       []byte
			key      string
			payload  json.RawMessage
		}
		var msgs []msg
		for rows.Next() {
			var m msg
			if err := rows.Scan(&m.ksid, &m.id, &m.dest, &m.to, &m.key, &m.payload); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, m)
		}
		rows.Close()
		for _, m := range msgs {
			to, err := shardkey.KeyspaceIDFromBytes(m.to)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.obs[m.dest].Receive(ctx, outbox.Delivery{Kind: kind, Key: m.key, To: to, From: region, Payload: m.payload}); err != nil {
				t.Fatalf("deliver %s %s: %v", kind, m.key, err)
			}
			if _, err := tgt.Pool.Exec(ctx, `UPDATE core.outbox SET delivered_at = now() WHERE ksid = $1 AND id = $2`, m.ksid, m.id); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

func (e *env) do(t *testing.T, region, method, path string, u apitest.User, body any) (int, map[string]any) {
	t.Helper()
	r := e.h.Do(t, region, apitest.Request{Method: method, Path: path, Token: u.Token, Body: body})
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return r.Status, m
}

func (e *env) postJob(t *testing.T, owner apitest.User, skills ...string) string {
	t.Helper()
	st, job := e.do(t, owner.Region, "POST", "/api/v1/jobs/", owner, map[string]any{"title": "A job", "skills": skills, "currency": "EUR"})
	if st != http.StatusCreated {
		t.Fatalf("post job: %d %v", st, job)
	}
	return job["id"].(string)
}

func (e *env) apply(t *testing.T, free apitest.User, job string) string {
	t.Helper()
	st, p := e.do(t, free.Region, "POST", "/api/v1/jobs/"+job+"/proposals", free, map[string]any{"cover_letter": "Hire me.", "rate": 30})
	if st != http.StatusCreated {
		t.Fatalf("apply: %d %v", st, p)
	}
	return p["id"].(string)
}

func (e *env) status(t *testing.T, region, path string, u apitest.User) string {
	t.Helper()
	st, body := e.do(t, region, "GET", path, u, nil)
	if st != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, st, body)
	}
	return fmt.Sprint(body["status"])
}

func (e *env) refs(t *testing.T, client apitest.User, job string) []map[string]any {
	t.Helper()
	st, body := e.do(t, client.Region, "GET", "/api/v1/jobs/"+job+"/proposals", client, nil)
	if st != http.StatusOK {
		t.Fatalf("list: %d %v", st, body)
	}
	var out []map[string]any
	for _, it := range body["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

// A withdrawal and an acceptance that cross between regions: the author's withdrawal stands, and the
// contract the acceptance started is cancelled in the freelancer's name, on both sides.
func TestWithdrawalCrossingAnAcceptance(t *testing.T) {
	e := start(t)
	client := e.h.CreateUser(t, authn.Client, "us-east")
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	job := e.postJob(t, client, "go")
	prop := e.apply(t, free, job)
	if n := e.deliver(t, "eu-west", "hiring.proposal_sync"); n != 1 {
		t.Fatalf("%d proposal messages, want 1", n)
	}
	// The freelancer withdraws; before that reaches us-east, the client accepts.
	if st, body := e.do(t, "eu-west", "DELETE", "/api/v1/proposals/"+prop, free, nil); st != http.StatusOK || body["status"] != "withdrawn" {
		t.Fatalf("withdraw: %d %v", st, body)
	}
	st, ctr := e.do(t, "us-east", "POST", "/api/v1/proposals/"+prop+"/accept", client, nil)
	if st != http.StatusCreated {
		t.Fatalf("accept: %d %v", st, ctr)
	}
	contract := ctr["id"].(string)
	e.deliver(t, "eu-west", "hiring.proposal_sync") // the withdrawal arrives after the acceptance: no change
	if refs := e.refs(t, client, job); refs[0]["status"] != "accepted" {
		t.Fatalf("reference row after a late withdrawal: %v", refs)
	}
	e.deliver(t, "us-east", "hiring.contract_sync") // the contract reaches the author, who had withdrawn
	if n := e.deliver(t, "eu-west", "hiring.contract_cancel"); n != 1 {
		t.Fatalf("%d cancellation requests, want 1", n)
	}
	if got := e.status(t, "us-east", "/api/v1/contracts/"+contract, client); got != "cancelled" {
		t.Fatalf("contract after the crossing: %s", got)
	}
	e.deliver(t, "us-east", "hiring.contract_sync")
	st, list := e.do(t, "eu-west", "GET", "/api/v1/contracts/", free, nil)
	items, _ := list["items"].([]any)
	if st != http.StatusOK || len(items) != 1 || items[0].(map[string]any)["status"] != "cancelled" ||
		items[0].(map[string]any)["cancelled_by"] != free.ID.String() {
		t.Fatalf("the freelancer's reference row: %d %v", st, list)
	}
	if got := e.status(t, "eu-west", "/api/v1/proposals/"+prop, free); got != "withdrawn" {
		t.Fatalf("proposal: %s", got)
	}
}

// A job that closes closes its pending proposals on both sides; a proposal that reaches a job closed
// meanwhile is closed back at its author; a redelivered message changes nothing.
func TestClosingAJobClosesItsProposals(t *testing.T) {
	e := start(t)
	client := e.h.CreateUser(t, authn.Client, "us-east")
	early := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	late := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	job := e.postJob(t, client, "go")
	p1 := e.apply(t, early, job)
	e.deliver(t, "ap-south", "hiring.proposal_sync")
	p2 := e.apply(t, late, job) // in flight while the job closes
	if st, body := e.do(t, "us-east", "PATCH", "/api/v1/jobs/"+job, client, map[string]any{"status": "closed"}); st != http.StatusOK || body["status"] != "closed" {
		t.Fatalf("close: %d %v", st, body)
	}
	if refs := e.refs(t, client, job); len(refs) != 1 || refs[0]["status"] != "closed" {
		t.Fatalf("reference rows after closing: %v", refs)
	}
	e.deliver(t, "eu-west", "hiring.proposal_sync")
	if refs := e.refs(t, client, job); len(refs) != 1 {
		t.Fatalf("a proposal to a closed job got a reference row: %v", refs)
	}
	if n := e.deliver(t, "us-east", "hiring.proposal_closed"); n != 2 {
		t.Fatalf("%d closing messages, want 2", n)
	}
	if e.status(t, "ap-south", "/api/v1/proposals/"+p1, early) != "closed" || e.status(t, "eu-west", "/api/v1/proposals/"+p2, late) != "closed" {
		t.Fatal("the authors' proposals are not closed")
	}
	// A closed proposal is not live: its author may apply again once the job reopens.
	if st, body := e.do(t, "us-east", "PATCH", "/api/v1/jobs/"+job, client, map[string]any{"status": "open"}); st != http.StatusOK {
		t.Fatalf("reopen: %d %v", st, body)
	}
	e.apply(t, early, job)

	// Redelivering an applied message: the inbox has its key.
	ctx := context.Background()
	var key string
	var payload json.RawMessage
	rt, err := e.h.Pools.Route(early.KSID)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Pool.QueryRow(ctx, `SELECT idempotency_key, payload FROM core.outbox WHERE kind = 'hiring.proposal_sync' AND delivered_at IS NOT NULL LIMIT 1`).Scan(&key, &payload); err != nil {
		t.Fatal(err)
	}
	dup, err := e.obs["us-east"].Receive(ctx, outbox.Delivery{Kind: "hiring.proposal_sync", Key: key, To: client.KSID, From: "ap-south", Payload: payload})
	if err != nil || !dup {
		t.Fatalf("redelivery: duplicate=%v err=%v", dup, err)
	}
}

// The lifecycle's refusals that need no second region.
func TestJobLifecycleRefusals(t *testing.T) {
	e := start(t)
	client := e.h.CreateUser(t, authn.Client, "eu-west")
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	unverified := e.h.CreateUnverifiedUser(t, authn.Freelancer, "eu-west")
	job := e.postJob(t, client, "go")
	if st, body := e.do(t, "eu-west", "PATCH", "/api/v1/jobs/"+job, client, map[string]any{"status": "completed"}); st != http.StatusConflict {
		t.Fatalf("complete an open job: %d %v", st, body)
	}
	if st, body := e.do(t, "eu-west", "PATCH", "/api/v1/jobs/"+job, client, map[string]any{"status": "in_progress"}); st != http.StatusBadRequest {
		t.Fatalf("set in_progress by hand: %d %v", st, body)
	}
	if st, body := e.do(t, "eu-west", "POST", "/api/v1/jobs/"+job+"/proposals", unverified, map[string]any{"cover_letter": "x", "rate": 1}); st != http.StatusForbidden || body["error"].(map[string]any)["code"] != "email_unverified" {
		t.Fatalf("unverified applies: %d %v", st, body)
	}
	for name, b := range map[string]any{
		"no rate":          map[string]any{"cover_letter": "x"},
		"zero rate":        map[string]any{"cover_letter": "x", "rate": 0},
		"three decimals":   map[string]any{"cover_letter": "x", "rate": 1.005},
		"no letter":        map[string]any{"rate": 5},
		"markup only":      map[string]any{"cover_letter": "<script>alert(1)</script>", "rate": 5},
		"bad currency":     map[string]any{"cover_letter": "x", "rate": 5, "currency": "E1R"},
		"unknown field":    map[string]any{"cover_letter": "x", "rate": 5, "bid": 1},
		"rate as a string": map[string]any{"cover_letter": "x", "rate": "five"},
	} {
		if st, body := e.do(t, "eu-west", "POST", "/api/v1/jobs/"+job+"/proposals", free, b); st != http.StatusBadRequest {
			t.Errorf("%s: %d %v", name, st, body)
		}
	}
	if st, _ := e.do(t, "eu-west", "POST", "/api/v1/jobs/job_00000000000000000000000000000000/proposals", free, map[string]any{"cover_letter": "x", "rate": 5}); st != http.StatusNotFound {
		t.Errorf("apply to a malformed job ID: %d", st)
	}
	prop := e.apply(t, free, job)
	e.deliver(t, "eu-west", "hiring.proposal_sync")
	if st, body := e.do(t, "eu-west", "DELETE", "/api/v1/proposals/"+prop, client, nil); st != http.StatusForbidden {
		t.Fatalf("the job owner withdraws: %d %v", st, body)
	}
	if st, body := e.do(t, "eu-west", "POST", "/api/v1/contracts/ctr_00000000000000000000000000000000/complete", client, nil); st != http.StatusNotFound {
		t.Fatalf("complete a malformed contract: %d %v", st, body)
	}
	if st, body := e.do(t, "eu-west", "GET", "/api/v1/contracts/?status=done", client, nil); st != http.StatusBadRequest {
		t.Fatalf("bad status filter: %d %v", st, body)
	}
	// Same region, same path: accept and cancel by the freelancer.
	st, ctr := e.do(t, "eu-west", "POST", "/api/v1/proposals/"+prop+"/accept", client, nil)
	if st != http.StatusCreated {
		t.Fatalf("accept: %d %v", st, ctr)
	}
	e.deliver(t, "eu-west", "hiring.contract_sync")
	if st, body := e.do(t, "eu-west", "POST", "/api/v1/contracts/"+ctr["id"].(string)+"/cancel", free, nil); st != http.StatusOK || body["status"] != "cancelled" || body["cancelled_by"] != free.ID.String() {
		t.Fatalf("cancel by the freelancer: %d %v", st, body)
	}
	// A job with a contract, even a cancelled one, is kept: closing it completes it.
	if st, body := e.do(t, "eu-west", "DELETE", "/api/v1/jobs/"+job, client, nil); st != http.StatusConflict {
		t.Fatalf("delete a job with a contract: %d %v", st, body)
	}
	if st, body := e.do(t, "eu-west", "PATCH", "/api/v1/jobs/"+job, client, map[string]any{"status": "closed"}); st != http.StatusOK || body["status"] != "completed" {
		t.Fatalf("close a job in progress: %d %v", st, body)
	}
	if st, body := e.do(t, "eu-west", "PATCH", "/api/v1/jobs/"+job, client, map[string]any{"status": "open"}); st != http.StatusConflict {
		t.Fatalf("reopen a completed job: %d %v", st, body)
	}
}

// Pagination of the owner's listing in both orders visits every proposal once.
func TestListingPages(t *testing.T) {
	e := start(t)
	client := e.h.CreateUser(t, authn.Client, "ap-south")
	job := e.postJob(t, client, "go", "sql", "redis", "k8s")
	want := map[string]bool{}
	for i := range 7 {
		f := e.h.CreateUser(t, authn.Freelancer, []string{"us-east", "eu-west", "ap-south"}[i%3])
		skills := []string{"go", "sql", "redis", "k8s"}[:i%4+1]
		if st, body := e.do(t, f.Region, "PUT", "/api/v1/users/profile", f, map[string]any{"skills": skills, "available": true}); st != http.StatusOK {
			t.Fatalf("profile: %d %v", st, body)
		}
		want[e.apply(t, f, job)] = true
	}
	for _, r := range []string{"us-east", "eu-west", "ap-south"} {
		e.deliver(t, r, "hiring.proposal_sync")
	}
	for _, sort := range []string{"newest", "best"} {
		seen := map[string]bool{}
		last := 2.0
		path := "/api/v1/jobs/" + job + "/proposals?limit=3&sort=" + sort
		for path != "" {
			st, body := e.do(t, "ap-south", "GET", path, client, nil)
			if st != http.StatusOK {
				t.Fatalf("%s: %d %v", path, st, body)
			}
			for _, it := range body["items"].([]any) {
				m := it.(map[string]any)
				id := m["id"].(string)
				if seen[id] || !want[id] {
					t.Fatalf("%s: %s twice or unknown", sort, id)
				}
				seen[id] = true
				if sc := m["score"].(float64); sort == "best" && sc > last {
					t.Fatalf("best first out of order: %v after %v", sc, last)
				} else {
					last = sc
				}
			}
			path = ""
			if c, _ := body["next_cursor"].(string); c != "" {
				path = "/api/v1/jobs/" + job + "/proposals?limit=3&sort=" + sort + "&cursor=" + c
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("%s: saw %d of %d", sort, len(seen), len(want))
		}
	}
}
