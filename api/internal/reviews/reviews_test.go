package reviews

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/hiring/side"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a three-region deployment serving the reviews routes, with the hiring feature's contract
// reader; the tests write contracts straight into the parties' shards.
type env struct {
	h   *apitest.Harness
	svc map[string]*Service
}

type envOptions struct {
	// redis, if set, replaces each node's Redis client for the reviews service.
	redis func(region string) redis.UniversalClient
	cfg   *Config
}

func start(t *testing.T, opts envOptions) *env {
	t.Helper()
	e := &env{svc: map[string]*Service{}}
	e.h = apitest.New(t, apitest.Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		sa := a
		if opts.redis != nil {
			c := *a
			c.Redis = opts.redis(a.Region)
			sa = &c
		}
		cfg := DefaultConfig()
		if opts.cfg != nil {
			cfg = *opts.cfg
		}
		svc, err := New(sa, cfg, side.NewSides(sa))
		if err != nil {
			t.Fatal(err)
		}
		e.svc[a.Region] = svc
		return svc.Routes()
	}})
	return e
}

// exec runs a statement on the shard of k.
func (e *env) exec(t *testing.T, k shardkey.KeyspaceID, sql string, args ...any) {
	t.Helper()
	rt, err := e.h.Pools.Route(k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// count runs a count(*) query on the shard of k.
func (e *env) count(t *testing.T, k shardkey.KeyspaceID, sql string, args ...any) int {
	t.Helper()
	rt, err := e.h.Pools.Route(k)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rt.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// job inserts a job owned by owner on the owner's shard.
func (e *env) job(t *testing.T, owner apitest.User) shardkey.ID {
	t.Helper()
	id := mustID(t, e, shardkey.KindJob, owner.KSID)
	e.exec(t, owner.KSID, `INSERT INTO core.jobs (ksid, id, owner_id, title, description) VALUES ($1, $2, $3, $4, $5)`,
		owner.KSID.Bytes(), id.Bytes(), owner.ID.Bytes(), "Build a thing", "Details")
	return id
}

// deal is a contract the tests wrote.
type deal struct {
	id, job      shardkey.ID
	client, free apitest.User
}

// contract writes a contract of client (its job's owner) and free, as the hiring feature keeps it: the
// contract on the client's shard, its reference row on the freelancer's, both with status.
func (e *env) contract(t *testing.T, client, free apitest.User, status string) deal {
	t.Helper()
	d := deal{id: mustID(t, e, shardkey.KindContract, client.KSID), job: e.job(t, client), client: client, free: free}
	proposal := mustID(t, e, shardkey.KindProposal, free.KSID)
	e.exec(t, client.KSID, `INSERT INTO core.contracts (ksid, id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status, completed_at)
		VALUES ($1, $2, $3, $4, $5, $6, 50, 'EUR', $7::text, CASE WHEN $7::text = 'completed' THEN now() END)`,
		client.KSID.Bytes(), d.id.Bytes(), d.job.Bytes(), proposal.Bytes(), client.ID.Bytes(), free.ID.Bytes(), status)
	e.exec(t, free.KSID, `INSERT INTO core.contract_refs (ksid, contract_id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status, started_at, completed_at)
		VALUES ($1, $2, $3, $4, $5, $6, 50, 'EUR', $7::text, now(), CASE WHEN $7::text = 'completed' THEN now() END)`,
		free.KSID.Bytes(), d.id.Bytes(), d.job.Bytes(), proposal.Bytes(), client.ID.Bytes(), free.ID.Bytes(), status)
	return d
}

// completed is a completed contract of client and free.
func (e *env) completed(t *testing.T, client, free apitest.User) deal {
	t.Helper()
	return e.contract(t, client, free, side.Completed)
}

// setClientSide and setFreelancerSide change one side's status, as completion and its outbox
// delivery do, one after the other.
func (e *env) setClientSide(t *testing.T, d deal, status string) {
	t.Helper()
	e.exec(t, d.client.KSID, `UPDATE core.contracts SET status = $3::text, completed_at = CASE WHEN $3::text = 'completed' THEN now() END
		WHERE ksid = $1 AND id = $2`, d.client.KSID.Bytes(), d.id.Bytes(), status)
}

func (e *env) setFreelancerSide(t *testing.T, d deal, status string) {
	t.Helper()
	e.exec(t, d.free.KSID, `UPDATE core.contract_refs SET status = $3::text, completed_at = CASE WHEN $3::text = 'completed' THEN now() END
		WHERE ksid = $1 AND contract_id = $2`, d.free.KSID.Bytes(), d.id.Bytes(), status)
}

// userOnOtherShard creates a user of region whose shard differs from other's.
func (e *env) userOnOtherShard(t *testing.T, role authn.Role, region string, other apitest.User) apitest.User {
	t.Helper()
	want, err := e.h.Pools.Route(other.KSID)
	if err != nil {
		t.Fatal(err)
	}
	for range 64 {
		u := e.h.CreateUser(t, role, region)
		rt, err := e.h.Pools.Route(u.KSID)
		if err != nil {
			t.Fatal(err)
		}
		if rt.Shard != want.Shard {
			return u
		}
	}
	t.Fatal("no user landed on another shard in 64 tries")
	return apitest.User{}
}

// unknownUser returns a well-formed user ID of region that no row has.
func (e *env) unknownUser(t *testing.T, region string) shardkey.ID {
	t.Helper()
	r, _ := e.h.Topology.Region(region)
	id, err := e.h.IDs.New(shardkey.KindUser, shardkey.NewKeyspaceID(r.Code, []byte(fmt.Sprint("nobody-", time.Now().UnixNano()))))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// review posts by's review of contract d in region and returns it.
func (e *env) review(t *testing.T, region string, by apitest.User, d deal, rating int) Review {
	t.Helper()
	r := e.post(t, region, by.Token, map[string]any{"contract_id": d.id, "rating": rating, "comment": "ok"})
	if r.Status != http.StatusCreated {
		t.Fatalf("create review: %d %s", r.Status, r.Body)
	}
	var rv Review
	r.JSON(t, &rv)
	return rv
}

func (e *env) post(t *testing.T, region, token string, body any) *apitest.Response {
	t.Helper()
	return e.h.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: token, Body: body})
}

// sameReview compares reviews field by field (the contract ID is a pointer).
func sameReview(a, b Review) bool {
	ac, bc := a.ContractID, b.ContractID
	a.ContractID, b.ContractID = nil, nil
	return a == b && (ac == nil) == (bc == nil) && (ac == nil || *ac == *bc)
}

func (e *env) stats(t *testing.T, region string, user shardkey.ID) Stats {
	t.Helper()
	r := e.h.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/reviews/stats?user_id=" + user.String()})
	if r.Status != http.StatusOK {
		t.Fatalf("stats: %d %s", r.Status, r.Body)
	}
	var st Stats
	r.JSON(t, &st)
	return st
}

func wantStats(t *testing.T, got Stats, count int, avg float64, dist [5]int) {
	t.Helper()
	if got.Count != count || got.Average != avg {
		t.Fatalf("stats: count %d average %v, want %d and %v (%+v)", got.Count, got.Average, count, avg, got)
	}
	for i, n := range dist {
		if got.Distribution[fmt.Sprint(i+1)] != n {
			t.Fatalf("stats: distribution %v, want %v", got.Distribution, dist)
		}
	}
	if len(got.Distribution) != 5 {
		t.Fatalf("stats: distribution %v must have the five keys", got.Distribution)
	}
}

func expect(t *testing.T, name string, r *apitest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || (code != "" && r.ErrorCode() != code) {
		t.Errorf("%s: got %d %s, want %d %s", name, r.Status, r.Body, status, code)
	}
}

func TestCreateAndRead(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "eu-west")
	free := e.userOnOtherShard(t, authn.Freelancer, "eu-west", client)
	stranger := e.h.CreateUser(t, authn.Client, "eu-west")
	d := e.completed(t, client, free)

	r := e.post(t, "eu-west", client.Token, map[string]any{
		"contract_id": d.id, "rating": 5, "comment": `<p>Great <b>work</b></p><script>alert(1)</script>`})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var rv Review
	r.JSON(t, &rv)
	if rv.ID.Kind() != shardkey.KindReview || rv.ID.KeyspaceID() != free.KSID {
		t.Errorf("the review ID %s must carry the reviewee's ksid %s", rv.ID, free.KSID)
	}
	if rv.ContractID == nil || *rv.ContractID != d.id || rv.Status != StatusVerified || rv.JobID != d.job ||
		rv.ReviewerID != client.ID || rv.RevieweeID != free.ID || rv.Rating != 5 {
		t.Errorf("review fields: %+v", rv)
	}
	if !strings.Contains(string(r.Body), `"contract_id":"`+d.id.String()+`"`) || !strings.Contains(string(r.Body), `"status":"verified"`) {
		t.Errorf("review JSON: %s", r.Body)
	}
	if rv.Comment != "<p>Great <b>work</b></p>" {
		t.Errorf("comment not sanitised: %q", rv.Comment)
	}
	if rv.CreatedAt.IsZero() || rv.CreatedAt.Location() != time.UTC || !strings.Contains(string(r.Body), `Z"`) {
		t.Errorf("times must be RFC 3339 UTC: %s", r.Body)
	}
	if loc := r.Header.Get("Location"); loc != "/api/v1/reviews/"+rv.ID.String() {
		t.Errorf("Location %q", loc)
	}
	// Stored on the reviewee's shard, not the reviewer's, with its outcome.
	if n := e.count(t, free.KSID, `SELECT count(*) FROM core.reviews WHERE ksid = $1 AND id = $2 AND status = 'verified' AND contract_id = $3`,
		free.KSID.Bytes(), rv.ID.Bytes(), d.id.Bytes()); n != 1 {
		t.Fatalf("review on the reviewee's shard: %d", n)
	}
	wantOutcome(t, e, free.KSID, rv, d)

	// Anyone may read it, without credentials.
	got := e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/reviews/" + rv.ID.String()})
	var back Review
	got.JSON(t, &back)
	if got.Status != 200 || !sameReview(back, rv) {
		t.Errorf("read back: %d %+v, want %+v", got.Status, back, rv)
	}
	// The freelancer reviews the client for the same contract.
	rb := e.review(t, "eu-west", free, d, 4)
	if rb.RevieweeID != client.ID || rb.ID.KeyspaceID() != client.KSID || *rb.ContractID != d.id {
		t.Errorf("the freelancer's review: %+v", rb)
	}
	wantOutcome(t, e, client.KSID, rb, d)

	// One review per party per contract.
	again := map[string]any{"contract_id": d.id, "rating": 3, "comment": "fine"}
	expect(t, "second review by the client", e.post(t, "eu-west", client.Token, again), 409, "already_reviewed")
	expect(t, "second review by the freelancer", e.post(t, "eu-west", free.Token, again), 409, "already_reviewed")
	// Only the parties.
	expect(t, "a stranger", e.post(t, "eu-west", stranger.Token, again), 403, "not_a_party")
	expect(t, "an unknown contract", e.post(t, "eu-west", client.Token,
		map[string]any{"contract_id": mustID(t, e, shardkey.KindContract, client.KSID), "rating": 3}), 403, "not_a_party")
	expect(t, "a contract of another region", e.post(t, "eu-west", client.Token,
		map[string]any{"contract_id": mustID(t, e, shardkey.KindContract, unknownRegionKSID(t)), "rating": 3}), 403, "not_a_party")
	// Only after completion; the completion reaches the freelancer's side later.
	active := e.contract(t, client, free, side.Active)
	body := map[string]any{"contract_id": active.id, "rating": 2}
	expect(t, "client, active contract", e.post(t, "eu-west", client.Token, body), 409, "contract_not_completed")
	expect(t, "freelancer, active contract", e.post(t, "eu-west", free.Token, body), 409, "contract_not_completed")
	e.setClientSide(t, active, side.Completed)
	expect(t, "freelancer, completion not delivered yet", e.post(t, "eu-west", free.Token, body), 409, "contract_not_completed")
	e.review(t, "eu-west", client, active, 2)
	e.setFreelancerSide(t, active, side.Completed)
	e.review(t, "eu-west", free, active, 5)
	cancelled := e.contract(t, client, free, side.Active)
	e.exec(t, client.KSID, `UPDATE core.contracts SET status = 'cancelled', cancelled_at = now(), cancelled_by = $3 WHERE ksid = $1 AND id = $2`,
		client.KSID.Bytes(), cancelled.id.Bytes(), client.ID.Bytes())
	expect(t, "cancelled contract", e.post(t, "eu-west", client.Token, map[string]any{"contract_id": cancelled.id, "rating": 1}), 409, "contract_not_completed")

	// Bad input is a 400 and writes nothing.
	fresh := e.completed(t, client, free)
	ok := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"contract_id": fresh.id.String(), "rating": 3, "comment": "fine"}
		mod(m)
		return m
	}
	for name, c := range map[string]struct {
		body  any
		field string
	}{
		"rating 0":                      {ok(func(m map[string]any) { m["rating"] = 0 }), "rating"},
		"rating 6":                      {ok(func(m map[string]any) { m["rating"] = 6 }), "rating"},
		"rating 4.5":                    {ok(func(m map[string]any) { m["rating"] = 4.5 }), "rating"},
		"rating as a string":            {ok(func(m map[string]any) { m["rating"] = "5" }), "rating"},
		"rating missing":                {ok(func(m map[string]any) { delete(m, "rating") }), "rating"},
		"contract missing":              {ok(func(m map[string]any) { delete(m, "contract_id") }), "contract_id"},
		"contract malformed":            {ok(func(m map[string]any) { m["contract_id"] = "ctr_nope" }), "contract_id"},
		"contract is a job ID":          {ok(func(m map[string]any) { m["contract_id"] = fresh.job }), "contract_id"},
		"comment too long":              {ok(func(m map[string]any) { m["comment"] = strings.Repeat("é", MaxComment+1) }), "comment"},
		"comment too long once escaped": {ok(func(m map[string]any) { m["comment"] = strings.Repeat("&", MaxComment) }), "comment"},
		"unknown field":                 {ok(func(m map[string]any) { m["stars"] = 5 }), "stars"},
		"the former job_id":             {ok(func(m map[string]any) { m["job_id"] = fresh.job }), "job_id"},
		"the former reviewee_id":        {ok(func(m map[string]any) { m["reviewee_id"] = free.ID }), "reviewee_id"},
	} {
		r := e.post(t, "eu-west", client.Token, c.body)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" || !strings.Contains(string(r.Body), `"`+c.field+`":`) {
			t.Errorf("%s: %d %s, want 400 naming %s", name, r.Status, r.Body, c.field)
		}
	}
	post := func(tok string, body any) *apitest.Response { return e.post(t, "eu-west", tok, body) }
	expect(t, "bad JSON", post(client.Token, `{"contract_id": `), 400, "invalid_request")
	expect(t, "not an object", post(client.Token, `[1,2]`), 400, "invalid_request")
	expect(t, "two values", post(client.Token, `{} {}`), 400, "invalid_request")
	expect(t, "empty body", post(client.Token, ``), 400, "invalid_request")
	expect(t, "missing token", post("", ok(func(map[string]any) {})), 401, "unauthenticated")
	expect(t, "invalid token", post("not.a.token", ok(func(map[string]any) {})), 401, "unauthenticated")
	big := `{"contract_id": "` + strings.Repeat("a", rest.MaxBodyBytes) + `"}`
	expect(t, "oversized body", post(client.Token, big), 413, "")
	expect(t, "not JSON", e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token,
		Body: "rating=5", Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}), 415, "")
	if n := e.count(t, free.KSID, `SELECT count(*) FROM core.reviews WHERE ksid = $1 AND contract_id = $2`, free.KSID.Bytes(), fresh.id.Bytes()); n != 0 {
		t.Errorf("refused requests wrote %d reviews", n)
	}
	// The requests above changed nothing: the contract can still be reviewed.
	e.review(t, "eu-west", client, fresh, 3)

	for name, path := range map[string]string{
		"malformed ID":     "/api/v1/reviews/rev_nope",
		"a user ID":        "/api/v1/reviews/" + free.ID.String(),
		"unknown ID":       "/api/v1/reviews/" + mustID(t, e, shardkey.KindReview, free.KSID).String(),
		"unknown region":   "/api/v1/reviews/" + mustID(t, e, shardkey.KindReview, unknownRegionKSID(t)).String(),
		"other shard's ID": "/api/v1/reviews/" + mustID(t, e, shardkey.KindReview, client.KSID).String(),
	} {
		expect(t, name, e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: path}), 404, "not_found")
	}
}

// wantOutcome checks the review_posted outcome of rv on the reviewee's shard.
func wantOutcome(t *testing.T, e *env, k shardkey.KeyspaceID, rv Review, d deal) {
	t.Helper()
	rt, err := e.h.Pools.Route(k)
	if err != nil {
		t.Fatal(err)
	}
	var (
		job, free, client []byte
		rating            int
		reviewer          string
	)
	err = rt.Pool.QueryRow(context.Background(), `SELECT job_id, freelancer_id, client_id, (details->>'rating')::int, details->>'reviewer_id'
		FROM ai.outcomes WHERE ksid = $1 AND kind = 'review_posted' AND subject_id = $2`, k.Bytes(), rv.ID.Bytes()).
		Scan(&job, &free, &client, &rating, &reviewer)
	if err != nil {
		t.Fatalf("outcome of review %s: %v", rv.ID, err)
	}
	if string(job) != string(d.job.Bytes()) || string(free) != string(d.free.ID.Bytes()) || string(client) != string(d.client.ID.Bytes()) ||
		rating != rv.Rating || reviewer != rv.ReviewerID.String() {
		t.Errorf("outcome of review %s: job %x freelancer %x client %x rating %d reviewer %s", rv.ID, job, free, client, rating, reviewer)
	}
}

// Reviews of other status than verified are listed, with their status, but never counted.
func TestUnverifiedListedNotCounted(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "eu-west")
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	old := mustID(t, e, shardkey.KindReview, free.KSID)
	// A review from before contracts: no contract, unverified.
	e.exec(t, free.KSID, `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, rating, comment, created_at)
		VALUES ($1, $2, $3, $4, $5, 1, 'old', now() - interval '1 day')`,
		free.KSID.Bytes(), old.Bytes(), client.ID.Bytes(), free.ID.Bytes(), e.job(t, client).Bytes())
	rv := e.review(t, "eu-west", client, e.completed(t, client, free), 5)

	r := e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/reviews/?user_id=" + free.ID.String()})
	var page rest.Page[Review]
	r.JSON(t, &page)
	if r.Status != 200 || len(page.Items) != 2 {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	if page.Items[0].ID != rv.ID || page.Items[0].Status != StatusVerified || page.Items[1].ID != old ||
		page.Items[1].Status != StatusUnverified || page.Items[1].ContractID != nil {
		t.Errorf("list: %s", r.Body)
	}
	if !strings.Contains(string(r.Body), `"contract_id":null,"status":"unverified"`) {
		t.Errorf("an unverified review must show a null contract_id: %s", r.Body)
	}
	g := e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/reviews/" + old.String()})
	var one Review
	g.JSON(t, &one)
	if g.Status != 200 || one.Status != StatusUnverified || one.ContractID != nil {
		t.Errorf("get unverified: %d %s", g.Status, g.Body)
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1})
	if n, avg, err := e.svc["eu-west"].Rating(context.Background(), free.ID); err != nil || n != 1 || avg != 5 {
		t.Errorf("Rating: %d %v %v", n, avg, err)
	}
	// Its author may still change it; it stays uncounted.
	if r := e.h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/reviews/" + old.String(), Token: client.Token,
		Body: map[string]any{"rating": 2}}); r.Status != 200 {
		t.Fatalf("patch unverified: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1})
}

func mustID(t *testing.T, e *env, kind shardkey.Kind, k shardkey.KeyspaceID) shardkey.ID {
	t.Helper()
	id, err := e.h.IDs.New(kind, k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// unknownRegionKSID is a ksid whose region code no region has.
func unknownRegionKSID(t *testing.T) shardkey.KeyspaceID {
	k, err := shardkey.MakeKeyspaceID(0x99, 12345)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A review is posted in the reviewer's region and written in the reviewee's, which checks the
// contract again from its side.
func TestCrossRegion(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "us-east")
	free := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	d := e.completed(t, client, free)
	body := map[string]any{"contract_id": d.id, "rating": 4, "comment": "good"}

	// Asked outside the caller's region, the node points at the caller's.
	r := e.post(t, "ap-south", client.Token, body)
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "us-east" || r.ErrorCode() != "wrong_region" {
		t.Fatalf("create in the wrong region: %d %s %v", r.Status, r.Body, r.Header)
	}
	// In the caller's region, the review is written in the reviewee's through the internal route.
	rv := e.review(t, "us-east", client, d, 4)
	if rv.ID.KeyspaceID() != free.KSID || rv.RevieweeID != free.ID || *rv.ContractID != d.id || rv.Status != StatusVerified {
		t.Errorf("review %+v not the freelancer's", rv)
	}
	if n := e.count(t, free.KSID, `SELECT count(*) FROM core.reviews WHERE ksid = $1 AND id = $2`, free.KSID.Bytes(), rv.ID.Bytes()); n != 1 {
		t.Fatalf("review on the reviewee's shard: %d", n)
	}
	wantOutcome(t, e, free.KSID, rv, d)
	// The peer's answers pass through.
	expect(t, "second review across regions", e.post(t, "us-east", client.Token, body), 409, "already_reviewed")
	// The freelancer (ap-south) reviews the client back: written in us-east.
	back := e.review(t, "ap-south", free, d, 5)
	if back.ID.KeyspaceID() != client.KSID {
		t.Errorf("review %s not in the client's keyspace", back.ID)
	}
	// Completed on the client's side, not yet on the freelancer's: the reviewee's side refuses.
	lag := e.contract(t, client, free, side.Active)
	e.setClientSide(t, lag, side.Completed)
	expect(t, "client, completion not delivered to the reviewee", e.post(t, "us-east", client.Token,
		map[string]any{"contract_id": lag.id, "rating": 3}), 409, "contract_not_completed")
	expect(t, "freelancer, completion not delivered", e.post(t, "ap-south", free.Token,
		map[string]any{"contract_id": lag.id, "rating": 3}), 409, "contract_not_completed")
	e.setFreelancerSide(t, lag, side.Completed)
	e.review(t, "us-east", client, lag, 3)

	// Every read and write of a review or a user's reviews in another region gets the replay hint.
	other := e.h.CreateUser(t, authn.Client, "eu-west")
	for name, req := range map[string]apitest.Request{
		"get":    {Method: "GET", Path: "/api/v1/reviews/" + rv.ID.String()},
		"list":   {Method: "GET", Path: "/api/v1/reviews/?user_id=" + free.ID.String()},
		"stats":  {Method: "GET", Path: "/api/v1/reviews/stats?user_id=" + free.ID.String()},
		"patch":  {Method: "PATCH", Path: "/api/v1/reviews/" + rv.ID.String(), Token: client.Token, Body: map[string]any{"rating": 1}},
		"delete": {Method: "DELETE", Path: "/api/v1/reviews/" + rv.ID.String(), Token: client.Token},
	} {
		for _, region := range []string{"us-east", "eu-west"} {
			r := e.h.Do(t, region, req)
			if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "ap-south" {
				t.Errorf("%s in %s: %d %s", name, region, r.Status, r.Body)
			}
		}
	}
	// In the right region, the author may change it; a user of another region may not (404).
	expect(t, "patch by a user of another region", e.h.Do(t, "ap-south", apitest.Request{Method: "PATCH",
		Path: "/api/v1/reviews/" + rv.ID.String(), Token: other.Token, Body: map[string]any{"rating": 1}}), 404, "not_found")
	expect(t, "delete by the reviewee", e.h.Do(t, "us-east", apitest.Request{Method: "DELETE",
		Path: "/api/v1/reviews/" + back.ID.String(), Token: client.Token}), 404, "not_found")
	expect(t, "patch by the author", e.h.Do(t, "ap-south", apitest.Request{Method: "PATCH",
		Path: "/api/v1/reviews/" + rv.ID.String(), Token: client.Token, Body: map[string]any{"rating": 2}}), 200, "")
	wantStats(t, e.stats(t, "ap-south", free.ID), 2, 2.5, [5]int{0, 1, 1, 0, 0})
	wantStats(t, e.stats(t, "us-east", client.ID), 1, 5, [5]int{0, 0, 0, 0, 1})
}

// The internal route checks the contract from the reviewee's side, whatever the calling node says.
func TestInternalRecheck(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "us-east")
	free := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	stranger := e.h.CreateUser(t, authn.Client, "us-east")
	localStranger := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	d := e.completed(t, client, free)
	peers := e.h.Nodes["us-east"].App.Peers
	call := func(body map[string]any) error {
		var out Review
		return peers.Call(context.Background(), "ap-south", http.MethodPost, feature.InternalPath(internalCreatePath), body, &out)
	}
	req := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"contract_id": d.id.String(), "reviewer_id": client.ID.String(), "reviewee_id": free.ID.String(),
			"rating": 4, "comment": "ok"}
		mod(m)
		return m
	}
	wantErr := func(name string, err error, status int, code string) {
		t.Helper()
		var he *apierror.Error
		if !errors.As(err, &he) || he.Status != status || he.Code != code {
			t.Errorf("%s: %v, want %d %s", name, err, status, code)
		}
	}
	wantErr("a reviewer who is not the other party", call(req(func(m map[string]any) { m["reviewer_id"] = stranger.ID.String() })), 403, "not_a_party")
	wantErr("the reviewee as its own reviewer", call(req(func(m map[string]any) { m["reviewer_id"] = free.ID.String() })), 403, "not_a_party")
	wantErr("a reviewee who is not a party", call(req(func(m map[string]any) { m["reviewee_id"] = localStranger.ID.String() })), 403, "not_a_party")
	wantErr("an unknown contract", call(req(func(m map[string]any) {
		m["contract_id"] = mustID(t, e, shardkey.KindContract, client.KSID).String()
	})), 403, "not_a_party")
	wantErr("bad rating", call(req(func(m map[string]any) { m["rating"] = 9 })), 400, "invalid_request")
	wantErr("bad reviewer ID", call(req(func(m map[string]any) { m["reviewer_id"] = "usr_x" })), 400, "invalid_request")
	wantErr("a reviewee of another region", call(req(func(m map[string]any) {
		m["reviewee_id"], m["reviewer_id"] = client.ID.String(), free.ID.String()
	})), 421, "wrong_region")
	e.setFreelancerSide(t, d, side.Active)
	wantErr("not completed on the reviewee's side", call(req(func(map[string]any) {})), 409, "contract_not_completed")
	if n := e.count(t, free.KSID, `SELECT count(*) FROM core.reviews WHERE ksid = $1`, free.KSID.Bytes()); n != 0 {
		t.Fatalf("refused calls wrote %d reviews", n)
	}
	e.setFreelancerSide(t, d, side.Completed)
	if err := call(req(func(map[string]any) {})); err != nil {
		t.Fatalf("a valid call: %v", err)
	}
	wantErr("twice", call(req(func(map[string]any) {})), 409, "already_reviewed")
	// Users cannot reach the route, not even with a token.
	r := e.h.Do(t, "ap-south", apitest.Request{Method: "POST", Path: feature.InternalPath(internalCreatePath), Token: client.Token, Body: req(func(map[string]any) {})})
	if r.Status/100 != 4 {
		t.Errorf("the internal route served a user: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "ap-south", free.ID), 1, 4, [5]int{0, 0, 0, 1, 0})
}

// The reviewee's region is unreachable: 503 region_unavailable with Retry-After, nothing written.
func TestRevieweeRegionUnavailable(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "us-east")
	free := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	d := e.completed(t, client, free)
	e.h.Nodes["ap-south"].Server.Close() // fault point: the ap-south node is gone
	r := e.post(t, "us-east", client.Token, map[string]any{"contract_id": d.id, "rating": 4})
	if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "region_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("reviewee's region down: %d %s", r.Status, r.Body)
	}
	if n := e.count(t, free.KSID, `SELECT count(*) FROM core.reviews WHERE ksid = $1`, free.KSID.Bytes()); n != 0 {
		t.Fatalf("%d reviews written", n)
	}
}

func TestPatchAndDelete(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "eu-west")
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	sameShard := e.h.CreateUser(t, authn.Client, "eu-west")
	otherShard := e.userOnOtherShard(t, authn.Client, "eu-west", client)
	d := e.completed(t, client, free)
	job := d.job
	rv := e.review(t, "eu-west", client, d, 3)
	path := "/api/v1/reviews/" + rv.ID.String()
	patch := func(tok string, body any) *apitest.Response {
		return e.h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: path, Token: tok, Body: body})
	}

	// Someone else's review is a 404, whoever and wherever they are.
	for name, u := range map[string]apitest.User{"the reviewee": free, "a user": sameShard, "a user on another shard": otherShard} {
		expect(t, "patch by "+name, patch(u.Token, map[string]any{"rating": 1}), 404, "not_found")
		expect(t, "delete by "+name, e.h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path, Token: u.Token}), 404, "not_found")
	}
	expect(t, "patch without a token", patch("", map[string]any{"rating": 1}), 401, "unauthenticated")
	expect(t, "patch with an invalid token", patch("x.y.z", map[string]any{"rating": 1}), 401, "unauthenticated")
	expect(t, "delete without a token", e.h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path}), 401, "unauthenticated")
	expect(t, "patch rating 9", patch(client.Token, map[string]any{"rating": 9}), 400, "invalid_request")
	expect(t, "patch unknown field", patch(client.Token, map[string]any{"job_id": job}), 400, "invalid_request")
	expect(t, "patch bad JSON", patch(client.Token, `{"rating":`), 400, "invalid_request")
	expect(t, "patch oversized", patch(client.Token, `{"comment": "`+strings.Repeat("x", rest.MaxBodyBytes)+`"}`), 413, "")
	expect(t, "patch comment too long", patch(client.Token, map[string]any{"comment": strings.Repeat("x", MaxComment+1)}), 400, "invalid_request")
	for name, p := range map[string]string{
		"malformed": "/api/v1/reviews/rev_123", "a job ID": "/api/v1/reviews/" + job.String(),
		"unknown": "/api/v1/reviews/" + mustID(t, e, shardkey.KindReview, free.KSID).String(),
	} {
		expect(t, "patch "+name, e.h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: p, Token: client.Token, Body: map[string]any{"rating": 1}}), 404, "not_found")
		expect(t, "delete "+name, e.h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: p, Token: client.Token}), 404, "not_found")
	}

	// Nothing changed so far.
	var cur Review
	e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: path}).JSON(t, &cur)
	if !sameReview(cur, rv) {
		t.Fatalf("failed requests changed the review: %+v, was %+v", cur, rv)
	}
	// The empty patch changes nothing, not even updated_at.
	r := patch(client.Token, map[string]any{})
	r.JSON(t, &cur)
	if r.Status != 200 || !sameReview(cur, rv) {
		t.Fatalf("empty patch: %d %s", r.Status, r.Body)
	}
	r = patch(client.Token, map[string]any{"comment": "<i>better</i><img src=x onerror=alert(1)>"})
	r.JSON(t, &cur)
	if r.Status != 200 || cur.Comment != "<i>better</i>" || cur.Rating != 3 || !cur.UpdatedAt.After(rv.UpdatedAt) {
		t.Fatalf("comment patch: %d %s", r.Status, r.Body)
	}
	r = patch(client.Token, map[string]any{"rating": 5, "comment": nil})
	r.JSON(t, &cur)
	if r.Status != 200 || cur.Rating != 5 || cur.Comment != "<i>better</i>" {
		t.Fatalf("rating patch: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1})

	r = e.h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path, Token: client.Token})
	if r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	expect(t, "read after delete", e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: path}), 404, "not_found")
	expect(t, "delete twice", e.h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: path, Token: client.Token}), 404, "not_found")
	wantStats(t, e.stats(t, "eu-west", free.ID), 0, 0, [5]int{})
	// After a delete the same review may be written again.
	e.review(t, "eu-west", client, d, 2)
}

func TestListPagination(t *testing.T) {
	e := start(t, envOptions{})
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	client := e.userOnOtherShard(t, authn.Client, "eu-west", free)
	other := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	const total = 45
	want := map[shardkey.ID]bool{}
	for i := range total {
		rv := e.review(t, "eu-west", client, e.completed(t, client, free), i%5+1)
		want[rv.ID] = true
	}
	e.review(t, "eu-west", client, e.completed(t, client, other), 1) // someone else's review: not listed

	var (
		seen   = map[shardkey.ID]bool{}
		cursor string
		pages  []int
		prev   *Review
	)
	for {
		path := "/api/v1/reviews/?limit=20&user_id=" + free.ID.String()
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: path})
		if r.Status != 200 {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var page rest.Page[Review]
		r.JSON(t, &page)
		pages = append(pages, len(page.Items))
		for _, rv := range page.Items {
			if !want[rv.ID] || seen[rv.ID] {
				t.Fatalf("unexpected or repeated review %s", rv.ID)
			}
			seen[rv.ID] = true
			if prev != nil && (rv.CreatedAt.After(prev.CreatedAt) || rv.CreatedAt.Equal(prev.CreatedAt) && rv.ID.String() > prev.ID.String()) {
				t.Fatalf("not newest first: %v after %v", rv.CreatedAt, prev.CreatedAt)
			}
			rv := rv
			prev = &rv
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if fmt.Sprint(pages) != "[20 20 5]" || len(seen) != total {
		t.Fatalf("pages %v, %d reviews; want [20 20 5] and %d", pages, len(seen), total)
	}
	// The default page is 20.
	var page rest.Page[Review]
	e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/reviews?user_id=" + free.ID.String()}).JSON(t, &page)
	if len(page.Items) != 20 || page.NextCursor == "" {
		t.Fatalf("default page: %d items", len(page.Items))
	}
	first := page.NextCursor

	list := func(q string) *apitest.Response {
		return e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/reviews/?" + q})
	}
	var empty rest.Page[Review]
	r := list("user_id=" + client.ID.String())
	r.JSON(t, &empty)
	if r.Status != 200 || len(empty.Items) != 0 || !strings.Contains(string(r.Body), `"items":[]`) {
		t.Errorf("a user without reviews: %d %s", r.Status, r.Body)
	}
	expect(t, "no user_id", list(""), 400, "invalid_request")
	expect(t, "malformed user_id", list("user_id=usr_1"), 400, "invalid_request")
	expect(t, "job ID as user_id", list("user_id="+e.job(t, client).String()), 400, "invalid_request")
	expect(t, "unknown user", list("user_id="+e.unknownUser(t, "eu-west").String()), 404, "not_found")
	expect(t, "user of an unknown region", list("user_id="+mustID(t, e, shardkey.KindUser, unknownRegionKSID(t)).String()), 404, "not_found")
	expect(t, "limit 0", list("limit=0&user_id="+free.ID.String()), 400, "invalid_request")
	expect(t, "limit 101", list("limit=101&user_id="+free.ID.String()), 400, "invalid_request")
	expect(t, "garbage cursor", list("cursor=%21%21&user_id="+free.ID.String()), 400, "invalid_request")
	expect(t, "another list's cursor", list("cursor="+first+"&user_id="+other.ID.String()), 400, "invalid_request")
	forged := rest.EncodeCursor(listCursor{User: free.ID.String(), CreatedAt: time.Now(), ID: "rev_bad"})
	expect(t, "forged cursor", list("cursor="+forged+"&user_id="+free.ID.String()), 400, "invalid_request")
	far := e.h.CreateUser(t, authn.Freelancer, "us-east")
	r = list("user_id=" + far.ID.String())
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "us-east" {
		t.Errorf("user of another region: %d %s", r.Status, r.Body)
	}
}

// Stats stay right through create, update and delete with the cache in use, and the cache really is
// used (and emptied by each change).
func TestStatsWithCache(t *testing.T) {
	e := start(t, envOptions{})
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	a := e.h.CreateUser(t, authn.Client, "eu-west")
	b := e.h.CreateUser(t, authn.Client, "eu-west")
	ctx := context.Background()
	cached := func() bool {
		n, err := e.h.Redis.Exists(ctx, statsKey(free.ID)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	wantStats(t, e.stats(t, "eu-west", free.ID), 0, 0, [5]int{})
	if !cached() {
		t.Fatal("stats were not cached")
	}
	r1 := e.review(t, "eu-west", a, e.completed(t, a, free), 5)
	if cached() {
		t.Fatal("create did not invalidate the cached stats")
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1})
	r2 := e.review(t, "eu-west", b, e.completed(t, b, free), 4)
	e.review(t, "eu-west", b, e.completed(t, b, free), 4)
	wantStats(t, e.stats(t, "eu-west", free.ID), 3, 4.33, [5]int{0, 0, 0, 2, 1})
	// Served from the cache: a row changed behind the API's back is not seen...
	rt, _ := e.h.Pools.Route(free.KSID)
	if _, err := rt.Pool.Exec(ctx, `UPDATE core.reviews SET rating = 1 WHERE ksid = $1 AND id = $2`, free.KSID.Bytes(), r2.ID.Bytes()); err != nil {
		t.Fatal(err)
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 3, 4.33, [5]int{0, 0, 0, 2, 1})
	// ...until a change through the API invalidates the entry.
	if r := e.h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/reviews/" + r1.ID.String(), Token: a.Token,
		Body: map[string]any{"rating": 2}}); r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 3, 2.33, [5]int{1, 1, 0, 1, 0})
	if r := e.h.Do(t, "eu-west", apitest.Request{Method: "DELETE", Path: "/api/v1/reviews/" + r2.ID.String(), Token: b.Token}); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 2, 3, [5]int{0, 1, 0, 1, 0})
	// Rating (the public profile's source) agrees.
	n, avg, err := e.svc["eu-west"].Rating(ctx, free.ID)
	if err != nil || n != 2 || avg != 3 {
		t.Fatalf("Rating: %d %v %v", n, avg, err)
	}
	// A corrupt entry is a miss, and is replaced.
	if err := e.h.Redis.Set(ctx, statsKey(free.ID), "garbage", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 2, 3, [5]int{0, 1, 0, 1, 0})
	if v, _ := e.h.Redis.Get(ctx, statsKey(free.ID)).Result(); v != "[0,1,0,1,0]" {
		t.Fatalf("corrupt entry not replaced: %q", v)
	}
	// Stats of unknown users, malformed IDs, other regions.
	stats := func(q string) *apitest.Response {
		return e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/reviews/stats?" + q})
	}
	expect(t, "stats of an unknown user", stats("user_id="+e.unknownUser(t, "eu-west").String()), 404, "not_found")
	expect(t, "stats of a user of an unknown region", stats("user_id="+mustID(t, e, shardkey.KindUser, unknownRegionKSID(t)).String()), 404, "not_found")
	expect(t, "stats without user_id", stats(""), 400, "invalid_request")
	expect(t, "stats of a malformed ID", stats("user_id=usr_zz"), 400, "invalid_request")
	if _, _, err := e.svc["eu-west"].Rating(ctx, e.unknownUser(t, "eu-west")); err == nil {
		t.Error("Rating of an unknown user must fail")
	}
}

// Readers racing writers must not leave stale stats in the cache: once the writes are done, the
// cached answer equals what PostgreSQL says.
func TestStatsConcurrentChanges(t *testing.T) {
	e := start(t, envOptions{})
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	const writers = 8
	authors := make([]apitest.User, writers)
	deals := make([]deal, writers)
	for i := range authors {
		authors[i] = e.h.CreateUser(t, authn.Client, "eu-west")
		deals[i] = e.completed(t, authors[i], free)
	}
	ctx := context.Background()
	svc := e.svc["eu-west"]
	stop := make(chan struct{})
	readerDone := make(chan error)
	go func() { // a reader filling the cache as fast as it can
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := svc.stats(ctx, free.ID); err != nil {
				readerDone <- err
				return
			}
		}
	}()
	results := make(chan int, writers)
	for i := range authors {
		go func() {
			r := e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: authors[i].Token,
				Body: map[string]any{"contract_id": deals[i].id, "rating": i%5 + 1}})
			results <- r.Status
		}()
	}
	for range writers {
		if s := <-results; s != http.StatusCreated {
			t.Errorf("create: %d", s)
		}
	}
	close(stop)
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	rt, _ := e.h.Pools.Route(free.KSID)
	d, err := countRatings(ctx, rt.Pool, free.KSID, free.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := statsOf(free.ID, d)
	if want.Count != writers {
		t.Fatalf("PostgreSQL holds %d reviews, want %d", want.Count, writers)
	}
	for range 3 { // the first read may fill the cache; the next ones come from it
		got := e.stats(t, "eu-west", free.ID)
		wantStats(t, got, want.Count, want.Average, [5]int(d))
	}
}

// closedPort returns an address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// With Redis down for good, every endpoint still works and stats come from PostgreSQL.
func TestStatsWithRedisDown(t *testing.T) {
	addr := closedPort(t)
	e := start(t, envOptions{redis: func(string) redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
		t.Cleanup(func() { c.Close() })
		return c
	}})
	free := e.h.CreateUser(t, authn.Freelancer, "us-east")
	a := e.h.CreateUser(t, authn.Client, "us-east")
	b := e.h.CreateUser(t, authn.Client, "us-east")
	wantStats(t, e.stats(t, "us-east", free.ID), 0, 0, [5]int{})
	r1 := e.review(t, "us-east", a, e.completed(t, a, free), 1)
	wantStats(t, e.stats(t, "us-east", free.ID), 1, 1, [5]int{1, 0, 0, 0, 0})
	r2 := e.review(t, "us-east", b, e.completed(t, b, free), 4)
	wantStats(t, e.stats(t, "us-east", free.ID), 2, 2.5, [5]int{1, 0, 0, 1, 0})
	if r := e.h.Do(t, "us-east", apitest.Request{Method: "PATCH", Path: "/api/v1/reviews/" + r1.ID.String(), Token: a.Token,
		Body: map[string]any{"rating": 5}}); r.Status != 200 {
		t.Fatalf("patch with Redis down: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "us-east", free.ID), 2, 4.5, [5]int{0, 0, 0, 1, 1})
	if r := e.h.Do(t, "us-east", apitest.Request{Method: "DELETE", Path: "/api/v1/reviews/" + r2.ID.String(), Token: b.Token}); r.Status != 204 {
		t.Fatalf("delete with Redis down: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "us-east", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1})
	if n, avg, err := e.svc["us-east"].Rating(context.Background(), free.ID); err != nil || n != 1 || avg != 5 {
		t.Fatalf("Rating with Redis down: %d %v %v", n, avg, err)
	}
	// Nothing reached the real Redis.
	if n, _ := e.h.Redis.Exists(context.Background(), statsKey(free.ID)).Result(); n != 0 {
		t.Fatal("stats cached in a Redis the service was not given")
	}
}

// faultHook fails every Redis command while down is set: the named fault point "redis down".
type faultHook struct {
	down  atomic.Bool
	calls atomic.Int64 // commands and pipelines that reached the hook
}

var errRedisDown = errors.New("fault point: redis down")

func (f *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		f.calls.Add(1)
		if f.down.Load() {
			cmd.SetErr(errRedisDown)
			return errRedisDown
		}
		return next(ctx, cmd)
	}
}
func (f *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		f.calls.Add(1)
		if f.down.Load() {
			for _, c := range cmds {
				c.SetErr(errRedisDown)
			}
			return errRedisDown
		}
		return next(ctx, cmds)
	}
}

// Redis fails exactly when a change needs its invalidation, and comes back with the old entry still
// in it. The change's stats must be served anyway, and the stale entry removed.
func TestStatsRedisOutageThenRecovery(t *testing.T) {
	hook := &faultHook{}
	cfg := DefaultConfig()
	cfg.FailureBackoff = 0 // the nodes' clock is real; TestStatsCacheBackoff covers the backoff
	e := start(t, envOptions{cfg: &cfg, redis: func(string) redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
		c.AddHook(hook)
		t.Cleanup(func() { c.Close() })
		return c
	}})
	ctx := context.Background()
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	a := e.h.CreateUser(t, authn.Client, "eu-west")
	e.review(t, "eu-west", a, e.completed(t, a, free), 5)
	wantStats(t, e.stats(t, "eu-west", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1}) // cached now

	hook.down.Store(true)
	e.review(t, "eu-west", a, e.completed(t, a, free), 1) // the invalidation fails; the write succeeds
	wantStats(t, e.stats(t, "eu-west", free.ID), 2, 3, [5]int{1, 0, 0, 0, 1})
	// The stale entry is really there: this is the hazard.
	if v, _ := e.h.Redis.Get(ctx, statsKey(free.ID)).Result(); v != "[0,0,0,0,1]" {
		t.Fatalf("expected the stale entry to survive the outage, got %q", v)
	}

	hook.down.Store(false)
	wantStats(t, e.stats(t, "eu-west", free.ID), 2, 3, [5]int{1, 0, 0, 0, 1})
	if v, _ := e.h.Redis.Get(ctx, statsKey(free.ID)).Result(); v == "[0,0,0,0,1]" {
		t.Fatal("the stale entry is still cached after Redis came back")
	}
	if e.svc["eu-west"].cache.npending.Load() != 0 {
		t.Fatal("the pending invalidation was not retried")
	}
	// And the cache is in use again.
	wantStats(t, e.stats(t, "eu-west", free.ID), 2, 3, [5]int{1, 0, 0, 0, 1})
	if v, _ := e.h.Redis.Get(ctx, statsKey(free.ID)).Result(); v != "[1,0,0,0,1]" {
		t.Fatalf("cache not refilled after recovery: %q", v)
	}
}

// A reader that computed stats before a change must not cache them after the change's invalidation.
func TestStatsCacheGenerationGuard(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	c := newStatsCache(rdb, DefaultConfig(), time.Now, testLog(t))
	ctx := context.Background()
	k, _ := shardkey.MakeKeyspaceID(0x40, uint64(time.Now().UnixNano())&0xffffffffffff)
	user, _ := shardkey.NewGenerator(time.Now, nil).New(shardkey.KindUser, k)

	before := c.lookup(ctx, user) // the reader notes the generation, then reads PostgreSQL...
	if before.hit || !before.canStore {
		t.Fatalf("first lookup: %+v", before)
	}
	c.invalidate(ctx, user)                                     // ...a writer commits and invalidates...
	c.store(ctx, user, before.gen, distribution{0, 0, 0, 0, 7}) // ...and the reader stores its old result.
	if got := c.lookup(ctx, user); got.hit {
		t.Fatalf("stale stats were cached: %+v", got)
	}
	// Without a change in between, the result is cached.
	now := c.lookup(ctx, user)
	c.store(ctx, user, now.gen, distribution{1, 2, 3, 4, 5})
	if got := c.lookup(ctx, user); !got.hit || got.dist != (distribution{1, 2, 3, 4, 5}) {
		t.Fatalf("fresh stats not cached: %+v", got)
	}
	if ttl := rdb.PTTL(ctx, statsKey(user)).Val(); ttl <= 0 || ttl > DefaultConfig().StatsTTL {
		t.Fatalf("entry TTL %v", ttl)
	}
}

// When more invalidations fail than the node can remember, it stops using the cache for one TTL.
func TestStatsCachePendingOverflow(t *testing.T) {
	hook := &faultHook{}
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	rdb.AddHook(hook)
	t.Cleanup(func() { rdb.Close() })
	cfg := DefaultConfig()
	cfg.MaxPendingInvalidations = 2
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newStatsCache(rdb, cfg, func() time.Time { return clock }, testLog(t))
	ctx := context.Background()
	gen := shardkey.NewGenerator(time.Now, nil)
	var users []shardkey.ID
	for i := range 4 {
		k, _ := shardkey.MakeKeyspaceID(0x40, uint64(time.Now().UnixNano()+int64(i))&0xffffffffffff)
		u, _ := gen.New(shardkey.KindUser, k)
		users = append(users, u)
		l := c.lookup(ctx, u)
		c.store(ctx, u, l.gen, distribution{1})
	}
	hook.down.Store(true)
	for _, u := range users[:3] {
		c.invalidate(ctx, u)
	}
	hook.down.Store(false)
	// users[2]'s invalidation was lost: the node must not serve any cached entry for a TTL.
	if got := c.lookup(ctx, users[3]); got.hit || got.canStore {
		t.Fatalf("cache used while bypassing: %+v", got)
	}
	clock = clock.Add(cfg.StatsTTL)
	if got := c.lookup(ctx, users[3]); !got.hit {
		t.Fatalf("cache not used again after one TTL: %+v", got)
	}
	// The remembered ones were retried by that lookup.
	for _, u := range users[:2] {
		if n := rdb.Exists(ctx, statsKey(u)).Val(); n != 0 {
			t.Fatalf("pending invalidation of %s not retried", u)
		}
	}
}

// After a Redis error the cache leaves Redis alone for FailureBackoff, queueing invalidations.
func TestStatsCacheBackoff(t *testing.T) {
	hook := &faultHook{}
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	rdb.AddHook(hook)
	t.Cleanup(func() { rdb.Close() })
	cfg := DefaultConfig()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newStatsCache(rdb, cfg, func() time.Time { return clock }, testLog(t))
	ctx := context.Background()
	k, _ := shardkey.MakeKeyspaceID(0x40, uint64(time.Now().UnixNano())&0xffffffffffff)
	user, _ := shardkey.NewGenerator(time.Now, nil).New(shardkey.KindUser, k)
	l := c.lookup(ctx, user)
	c.store(ctx, user, l.gen, distribution{0, 0, 3})

	hook.down.Store(true)
	if got := c.lookup(ctx, user); got.hit || got.canStore {
		t.Fatalf("lookup with Redis down: %+v", got)
	}
	hook.down.Store(false)
	before := hook.calls.Load()
	if got := c.lookup(ctx, user); got.hit || got.canStore {
		t.Fatalf("lookup during the backoff: %+v", got)
	}
	c.invalidate(ctx, user) // queued, not sent
	if n := hook.calls.Load() - before; n != 0 {
		t.Fatalf("%d Redis calls during the backoff", n)
	}
	if c.npending.Load() != 1 {
		t.Fatal("an invalidation during the backoff was not queued")
	}
	clock = clock.Add(cfg.FailureBackoff)
	if got := c.lookup(ctx, user); got.hit || !got.canStore {
		t.Fatalf("after the backoff the queued invalidation must have emptied the entry: %+v", got)
	}
	if c.npending.Load() != 0 {
		t.Fatal("queued invalidation not sent after the backoff")
	}
}

func TestStatsOf(t *testing.T) {
	for _, c := range []struct {
		d     distribution
		count int
		avg   float64
	}{
		{distribution{}, 0, 0},
		{distribution{0, 0, 0, 0, 1}, 1, 5},
		{distribution{1, 0, 0, 0, 1}, 2, 3},
		{distribution{0, 0, 0, 2, 1}, 3, 4.33},
		{distribution{1, 1, 0, 0, 1}, 3, 2.67},
		{distribution{1000000, 0, 0, 0, 0}, 1000000, 1},
	} {
		s := statsOf(shardkey.ID{}, c.d)
		if s.Count != c.count || s.Average != c.avg || len(s.Distribution) != 5 {
			t.Errorf("statsOf(%v) = %+v, want count %d average %v", c.d, s, c.count, c.avg)
		}
	}
}

func TestDecodeDistribution(t *testing.T) {
	for in, ok := range map[string]bool{
		"[1,2,3,4,5]": true, "[0,0,0,0,0]": true, "[1,2,3,4]": false, "[1,2,3,4,5,6]": false,
		"[-1,0,0,0,0]": false, "garbage": false, "": false, `{"a":1}`: false, "[1.5,0,0,0,0]": false,
	} {
		if _, got := decodeDistribution(in); got != ok {
			t.Errorf("decodeDistribution(%q) ok = %v, want %v", in, got, ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"StatsTTL":                func(c *Config) { c.StatsTTL = 0 },
		"CacheTimeout":            func(c *Config) { c.CacheTimeout = 0 },
		"MaxPendingInvalidations": func(c *Config) { c.MaxPendingInvalidations = 0 },
		"FailureBackoff":          func(c *Config) { c.FailureBackoff = -time.Second },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// testLog discards: the cache's log lines are expected in these tests.
func testLog(*testing.T) *slog.Logger { return testLogB() }

func testLogB() *slog.Logger { return slog.New(slog.DiscardHandler) }

// An account that has not verified its email may not review (authn.CapPostReview).
func TestUnverifiedCannotReview(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUnverifiedUser(t, authn.Client, "eu-west")
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	d := e.completed(t, client, free)
	r := e.post(t, "eu-west", client.Token, map[string]any{"contract_id": d.id, "rating": 1, "comment": "fake"})
	expect(t, "unverified review", r, http.StatusForbidden, "email_unverified")
	if st := e.stats(t, "eu-west", free.ID); st.Count != 0 {
		t.Errorf("the refused review counts: %+v", st)
	}
}

// Concurrent reviews of one contract by one party: one is written, the others are 409 already_reviewed.
func TestConcurrentSecondReview(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "eu-west")
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	d := e.completed(t, client, free)
	const n = 6
	results := make(chan *apitest.Response, n)
	for i := range n {
		go func() {
			results <- e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token,
				Body: map[string]any{"contract_id": d.id, "rating": i%5 + 1}})
		}()
	}
	created := 0
	for range n {
		r := <-results
		switch {
		case r.Status == http.StatusCreated:
			created++
		case r.Status != http.StatusConflict || r.ErrorCode() != "already_reviewed":
			t.Errorf("concurrent review: %d %s", r.Status, r.Body)
		}
	}
	if created != 1 {
		t.Fatalf("%d reviews created, want 1", created)
	}
	if c := e.count(t, free.KSID, `SELECT count(*) FROM ai.outcomes WHERE ksid = $1 AND kind = 'review_posted'`, free.KSID.Bytes()); c != 1 {
		t.Fatalf("%d review_posted outcomes, want 1", c)
	}
}
