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

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a three-region deployment serving the reviews routes, plus a stand-in for the jobs
// package's GET /jobs/{id} (reviews read remote jobs through it).
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
		svc, err := New(sa, cfg, jobs.NewOwnerLookup(sa))
		if err != nil {
			t.Fatal(err)
		}
		e.svc[a.Region] = svc
		return append(svc.Routes(), jobStandIn(a))
	}})
	return e
}

// jobStandIn answers GET /jobs/{id} with {id, owner_id} from the owner's shard, as the jobs package
// does; the reviews service calls it in the job's region.
func jobStandIn(a *feature.Deps) feature.Route {
	return feature.Route{Name: "testGetJob", Method: http.MethodGet, Path: "/jobs/{id}", Access: feature.Public,
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindJob)
			if err != nil {
				return apierror.NotFound("job")
			}
			shard, err := a.ReadShard(r.Context(), id.KeyspaceID())
			if err != nil {
				return err
			}
			var owner []byte
			err = shard.Pool.QueryRow(r.Context(), `SELECT owner_id FROM core.jobs WHERE ksid = $1 AND id = $2`,
				shard.Route.KeyspaceID.Bytes(), id.Bytes()).Scan(&owner)
			if errors.Is(err, pgx.ErrNoRows) {
				return apierror.NotFound("job")
			}
			if err != nil {
				return err
			}
			oid, err := shardkey.IDFromBytes(owner)
			if err != nil {
				return err
			}
			rest.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "owner_id": oid, "status": "open"})
			return nil
		}}
}

// job inserts a job owned by owner on the owner's shard (the jobs package is written elsewhere).
func (e *env) job(t *testing.T, owner apitest.User) shardkey.ID {
	t.Helper()
	id, err := e.h.IDs.New(shardkey.KindJob, owner.KSID)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := e.h.Pools.Route(owner.KSID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Pool.Exec(context.Background(),
		`INSERT INTO core.jobs (ksid, id, owner_id, title, description) VALUES ($1, $2, $3, $4, $5)`,
		owner.KSID.Bytes(), id.Bytes(), owner.ID.Bytes(), "Build a thing", "Details"); err != nil {
		t.Fatal(err)
	}
	return id
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

func (e *env) review(t *testing.T, region string, by apitest.User, of shardkey.ID, job shardkey.ID, rating int) Review {
	t.Helper()
	r := e.h.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: by.Token,
		Body: map[string]any{"job_id": job, "reviewee_id": of, "rating": rating, "comment": "ok"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create review: %d %s", r.Status, r.Body)
	}
	var rv Review
	r.JSON(t, &rv)
	return rv
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
	job := e.job(t, client)

	r := e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token, Body: map[string]any{
		"job_id": job, "reviewee_id": free.ID, "rating": 5, "comment": `<p>Great <b>work</b></p><script>alert(1)</script>`}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var rv Review
	r.JSON(t, &rv)
	if rv.ID.Kind() != shardkey.KindReview || rv.ID.KeyspaceID() != free.KSID {
		t.Errorf("the review ID %s must carry the reviewee's ksid %s", rv.ID, free.KSID)
	}
	if rv.JobID != job || rv.ReviewerID != client.ID || rv.RevieweeID != free.ID || rv.Rating != 5 {
		t.Errorf("review fields: %+v", rv)
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
	// Stored on the reviewee's shard, not the reviewer's.
	rt, _ := e.h.Pools.Route(free.KSID)
	var n int
	if err := rt.Pool.QueryRow(context.Background(), `SELECT count(*) FROM core.reviews WHERE ksid = $1 AND id = $2`, free.KSID.Bytes(), rv.ID.Bytes()).Scan(&n); err != nil || n != 1 {
		t.Fatalf("review on the reviewee's shard: %d %v", n, err)
	}

	// Anyone may read it, without credentials.
	got := e.h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/reviews/" + rv.ID.String()})
	var back Review
	got.JSON(t, &back)
	if got.Status != 200 || back != rv {
		t.Errorf("read back: %d %+v, want %+v", got.Status, back, rv)
	}
	// The reviewee may review the owner for the same job.
	e.review(t, "eu-west", free, client.ID, job, 4)

	post := func(tok string, body any) *apitest.Response {
		return e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: tok, Body: body})
	}
	ok := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"job_id": job.String(), "reviewee_id": free.ID.String(), "rating": 3, "comment": "fine"}
		mod(m)
		return m
	}
	expect(t, "duplicate", post(client.Token, ok(func(map[string]any) {})), 409, "conflict")
	for name, c := range map[string]struct {
		body  any
		field string
	}{
		"self review":           {ok(func(m map[string]any) { m["reviewee_id"] = client.ID }), "reviewee_id"},
		"rating 0":              {ok(func(m map[string]any) { m["rating"] = 0 }), "rating"},
		"rating 6":              {ok(func(m map[string]any) { m["rating"] = 6 }), "rating"},
		"rating 4.5":            {ok(func(m map[string]any) { m["rating"] = 4.5 }), "rating"},
		"rating as a string":    {ok(func(m map[string]any) { m["rating"] = "5" }), "rating"},
		"rating missing":        {ok(func(m map[string]any) { delete(m, "rating") }), "rating"},
		"job missing":           {ok(func(m map[string]any) { delete(m, "job_id") }), "job_id"},
		"job malformed":         {ok(func(m map[string]any) { m["job_id"] = "job_nope" }), "job_id"},
		"job is a user ID":      {ok(func(m map[string]any) { m["job_id"] = free.ID }), "job_id"},
		"job unknown":           {ok(func(m map[string]any) { m["job_id"] = mustID(t, e, shardkey.KindJob, client.KSID) }), "job_id"},
		"job of someone else":   {ok(func(m map[string]any) { m["job_id"] = e.job(t, stranger) }), "job_id"},
		"job of unknown region": {ok(func(m map[string]any) { m["job_id"] = mustID(t, e, shardkey.KindJob, unknownRegionKSID(t)) }), "job_id"},
		"reviewee malformed":    {ok(func(m map[string]any) { m["reviewee_id"] = "usr_x" }), "reviewee_id"},
		"reviewee unknown":      {ok(func(m map[string]any) { m["reviewee_id"] = e.unknownUser(t, "eu-west") }), "reviewee_id"},
		"reviewee of unknown region": {ok(func(m map[string]any) {
			m["reviewee_id"] = mustID(t, e, shardkey.KindUser, unknownRegionKSID(t))
		}), "reviewee_id"},
		"comment too long":              {ok(func(m map[string]any) { m["comment"] = strings.Repeat("é", MaxComment+1) }), "comment"},
		"comment too long once escaped": {ok(func(m map[string]any) { m["comment"] = strings.Repeat("&", MaxComment) }), "comment"},
		"unknown field":                 {ok(func(m map[string]any) { m["stars"] = 5 }), "stars"},
	} {
		r := post(client.Token, c.body)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" || !strings.Contains(string(r.Body), `"`+c.field+`":`) {
			t.Errorf("%s: %d %s, want 400 naming %s", name, r.Status, r.Body, c.field)
		}
	}
	expect(t, "bad JSON", post(client.Token, `{"job_id": `), 400, "invalid_request")
	expect(t, "not an object", post(client.Token, `[1,2]`), 400, "invalid_request")
	expect(t, "two values", post(client.Token, `{} {}`), 400, "invalid_request")
	expect(t, "empty body", post(client.Token, ``), 400, "invalid_request")
	expect(t, "missing token", post("", ok(func(map[string]any) {})), 401, "unauthenticated")
	expect(t, "invalid token", post("not.a.token", ok(func(map[string]any) {})), 401, "unauthenticated")
	big := `{"job_id": "` + strings.Repeat("a", rest.MaxBodyBytes) + `"}`
	expect(t, "oversized body", post(client.Token, big), 413, "")
	expect(t, "not JSON", e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token,
		Body: "rating=5", Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}), 415, "")

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

// A review is written in the reviewee's region; the job may be in any region.
func TestCrossRegion(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "us-east")
	free := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	job := e.job(t, client)
	body := map[string]any{"job_id": job, "reviewee_id": free.ID, "rating": 4, "comment": "good"}

	// Asked in the client's region, the node points at the reviewee's.
	r := e.h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token, Body: body})
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "ap-south" || r.ErrorCode() != "wrong_region" {
		t.Fatalf("create in the wrong region: %d %s %v", r.Status, r.Body, r.Header)
	}
	// The replay lands in ap-south, which reads the job from us-east through a peer call.
	r = e.h.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token, Body: body})
	if r.Status != http.StatusCreated {
		t.Fatalf("create in the reviewee's region: %d %s", r.Status, r.Body)
	}
	var rv Review
	r.JSON(t, &rv)
	if rv.ID.KeyspaceID().Region() != free.KSID.Region() {
		t.Errorf("review %s not in the reviewee's region", rv.ID)
	}
	// A remote job that does not exist, or that neither party posted.
	other := e.h.CreateUser(t, authn.Client, "eu-west")
	for name, jid := range map[string]shardkey.ID{
		"unknown remote job":       mustID(t, e, shardkey.KindJob, client.KSID),
		"remote job of a stranger": e.job(t, other),
	} {
		r := e.h.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token,
			Body: map[string]any{"job_id": jid, "reviewee_id": free.ID, "rating": 4}})
		if r.Status != 400 || !strings.Contains(string(r.Body), `"job_id"`) {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// The freelancer (ap-south) reviews the client back: written in us-east; the job is local there.
	r = e.h.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: free.Token,
		Body: map[string]any{"job_id": job, "reviewee_id": client.ID, "rating": 5}})
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "us-east" {
		t.Fatalf("review back, wrong region: %d %s", r.Status, r.Body)
	}
	back := e.review(t, "us-east", free, client.ID, job, 5)

	// Every read and write of a review or a user's reviews in another region gets the replay hint.
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
	wantStats(t, e.stats(t, "ap-south", free.ID), 1, 2, [5]int{0, 1, 0, 0, 0})
	wantStats(t, e.stats(t, "us-east", client.ID), 1, 5, [5]int{0, 0, 0, 0, 1})
}

// The peer call fails: the job's region is unreachable. The request fails with 503, changes nothing.
func TestJobRegionUnavailable(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "us-east")
	free := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	job := e.job(t, client)
	e.h.Nodes["us-east"].Server.Close() // fault point: the us-east node is gone
	r := e.h.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token,
		Body: map[string]any{"job_id": job, "reviewee_id": free.ID, "rating": 4}})
	if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "region_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("job region down: %d %s", r.Status, r.Body)
	}
	wantStats(t, e.stats(t, "ap-south", free.ID), 0, 0, [5]int{})
}

func TestPatchAndDelete(t *testing.T) {
	e := start(t, envOptions{})
	client := e.h.CreateUser(t, authn.Client, "eu-west")
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	sameShard := e.h.CreateUser(t, authn.Client, "eu-west")
	otherShard := e.userOnOtherShard(t, authn.Client, "eu-west", client)
	job := e.job(t, client)
	rv := e.review(t, "eu-west", client, free.ID, job, 3)
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
	if cur != rv {
		t.Fatalf("failed requests changed the review: %+v, was %+v", cur, rv)
	}
	// The empty patch changes nothing, not even updated_at.
	r := patch(client.Token, map[string]any{})
	r.JSON(t, &cur)
	if r.Status != 200 || cur != rv {
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
	e.review(t, "eu-west", client, free.ID, job, 2)
}

func TestListPagination(t *testing.T) {
	e := start(t, envOptions{})
	free := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	client := e.userOnOtherShard(t, authn.Client, "eu-west", free)
	other := e.h.CreateUser(t, authn.Freelancer, "eu-west")
	const total = 45
	want := map[shardkey.ID]bool{}
	for i := range total {
		rv := e.review(t, "eu-west", client, free.ID, e.job(t, client), i%5+1)
		want[rv.ID] = true
	}
	e.review(t, "eu-west", client, other.ID, e.job(t, client), 1) // someone else's review: not listed

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
	r1 := e.review(t, "eu-west", a, free.ID, e.job(t, a), 5)
	if cached() {
		t.Fatal("create did not invalidate the cached stats")
	}
	wantStats(t, e.stats(t, "eu-west", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1})
	r2 := e.review(t, "eu-west", b, free.ID, e.job(t, b), 4)
	e.review(t, "eu-west", b, free.ID, e.job(t, b), 4)
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
	jobs := make([]shardkey.ID, writers)
	for i := range authors {
		authors[i] = e.h.CreateUser(t, authn.Client, "eu-west")
		jobs[i] = e.job(t, authors[i])
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
				Body: map[string]any{"job_id": jobs[i], "reviewee_id": free.ID, "rating": i%5 + 1}})
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
	r1 := e.review(t, "us-east", a, free.ID, e.job(t, a), 1)
	wantStats(t, e.stats(t, "us-east", free.ID), 1, 1, [5]int{1, 0, 0, 0, 0})
	r2 := e.review(t, "us-east", b, free.ID, e.job(t, b), 4)
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
	e.review(t, "eu-west", a, free.ID, e.job(t, a), 5)
	wantStats(t, e.stats(t, "eu-west", free.ID), 1, 5, [5]int{0, 0, 0, 0, 1}) // cached now

	hook.down.Store(true)
	e.review(t, "eu-west", a, free.ID, e.job(t, a), 1) // the invalidation fails; the write succeeds
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
	job := e.job(t, client)
	r := e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: client.Token,
		Body: map[string]any{"job_id": job, "reviewee_id": free.ID, "rating": 1, "comment": "fake"}})
	expect(t, "unverified review", r, http.StatusForbidden, "email_unverified")
	if st := e.stats(t, "eu-west", free.ID); st.Count != 0 {
		t.Errorf("the refused review counts: %+v", st)
	}
}
