package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/shardmgr/residency"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// verifiedUser registers a user homed in region through the router of via and verifies their email.
func (e *e2e) verifiedUser(t *testing.T, via, role, region string) (token, id string) {
	t.Helper()
	r, err := e.cluster.RegisterVerified(client, e.routers[via], fmt.Sprintf("hire-%s-%s-%d@e2e.test", role, region, time.Now().UnixNano()), role, region)
	if err != nil {
		t.Fatalf("register a %s in %s: %v", role, region, err)
	}
	return r.AccessToken, r.User.ID
}

// eventually repeats do until ok accepts its reply, for at most 30 s; the outbox delivers within
// moments, or after a backoff when a region was down.
func (e *e2e) eventually(t *testing.T, what string, do func() reply, ok func(reply) bool) reply {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do()
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d %v", what, r.status, r.body)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func items(r reply) []map[string]any {
	raw, _ := r.body["items"].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, it := range raw {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func expect(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && errCode(r) != code) {
		t.Fatalf("%s: %d %v, want %d %s", what, r.status, r.body, status, code)
	}
}

// shardQuery runs q on every shard of region and sums the single integer each returns.
func shardQuery(t *testing.T, c *cluster.Cluster, region, q string, args ...any) int64 {
	t.Helper()
	var total int64
	for _, s := range c.Topology.Shards {
		if s.Region != region {
			continue
		}
		conn, err := pgx.Connect(context.Background(), c.DSN[s.Name])
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		err = conn.QueryRow(context.Background(), q, args...).Scan(&n)
		conn.Close(context.Background())
		if err != nil {
			t.Fatalf("%s on %s: %v", q, s.Name, err)
		}
		total += n
	}
	return total
}

// A freelancer in one region applies to the job of a client in another, is hired, completes the work,
// and both review each other, all through routers of every region; every refusal of the contract is
// checked on the way; the rows pass the residency audit.
func TestE2EHiringAcrossRegions(t *testing.T) {
	e := startE2E(t)
	client1, clientID := e.verifiedUser(t, "ap-south", "client", "us-east")
	free, freeID := e.verifiedUser(t, "us-east", "freelancer", "eu-west")
	stranger, _ := e.verifiedUser(t, "eu-west", "freelancer", "ap-south")
	otherClient, _ := e.verifiedUser(t, "us-east", "client", "ap-south")
	if r := e.do(t, "eu-west", "PUT", "/api/v1/users/profile", free, map[string]any{"skills": []string{"go", "postgresql"}, "hourly_rate": 90, "available": true}); r.status != http.StatusOK {
		t.Fatalf("profile: %d %v", r.status, r.body)
	}

	job := e.do(t, "eu-west", "POST", "/api/v1/jobs/", client1, map[string]any{"title": "Shard the marketplace", "description": "Across regions.",
		"skills": []string{"go", "postgresql", "consul"}, "budget_min": 1000, "budget_max": 5000, "currency": "USD"})
	expect(t, "post job", job, http.StatusCreated, "")
	jobID := job.body["id"].(string)

	// Apply through a third region's router: the proposal is written in the author's region.
	bad := e.do(t, "ap-south", "POST", "/api/v1/jobs/"+jobID+"/proposals", free, map[string]any{"cover_letter": "", "rate": -1})
	expect(t, "bad proposal", bad, http.StatusBadRequest, "")
	expect(t, "a client applying", e.do(t, "us-east", "POST", "/api/v1/jobs/"+jobID+"/proposals", otherClient,
		map[string]any{"cover_letter": "x", "rate": 10}), http.StatusForbidden, "")
	expect(t, "another currency", e.do(t, "us-east", "POST", "/api/v1/jobs/"+jobID+"/proposals", free,
		map[string]any{"cover_letter": "x", "rate": 10, "currency": "EUR"}), http.StatusBadRequest, "")
	prop := e.do(t, "ap-south", "POST", "/api/v1/jobs/"+jobID+"/proposals", free,
		map[string]any{"cover_letter": "<p>I have <b>sharded</b> PostgreSQL before.</p><script>x</script>", "rate": 85.5})
	expect(t, "apply", prop, http.StatusCreated, "")
	if prop.header.Get("X-Meridian-Region") != "eu-west" || prop.body["status"] != "pending" || prop.body["client_id"] != clientID ||
		prop.body["rate"] != 85.5 || prop.body["currency"] != "USD" || prop.body["score"].(float64) <= 0.5 {
		t.Fatalf("proposal: %q %v", prop.header.Get("X-Meridian-Region"), prop.body)
	}
	propID := prop.body["id"].(string)
	expect(t, "a second live proposal", e.do(t, "us-east", "POST", "/api/v1/jobs/"+jobID+"/proposals", free,
		map[string]any{"cover_letter": "again", "rate": 80}), http.StatusConflict, "proposal_exists")

	// The author and the job's owner read it, cover letter included, in the author's region; nobody else.
	for _, via := range []string{"us-east", "eu-west", "ap-south"} {
		r := e.do(t, via, "GET", "/api/v1/proposals/"+propID, client1, nil)
		if r.status != http.StatusOK || r.header.Get("X-Meridian-Region") != "eu-west" || r.body["cover_letter"] != "<p>I have <b>sharded</b> PostgreSQL before.</p>" {
			t.Fatalf("owner reads the proposal via %s: %d %q %v", via, r.status, r.header.Get("X-Meridian-Region"), r.body)
		}
	}
	expect(t, "a stranger reads the proposal", e.do(t, "us-east", "GET", "/api/v1/proposals/"+propID, stranger, nil), http.StatusNotFound, "")
	mine := e.do(t, "us-east", "GET", "/api/v1/proposals/", free, nil)
	if mine.status != http.StatusOK || len(items(mine)) != 1 || items(mine)[0]["id"] != propID {
		t.Fatalf("own proposals: %d %v", mine.status, mine.body)
	}

	// The owner's listing comes from the reference row on the owner's shard, once the outbox delivered it.
	list := e.eventually(t, "the job owner's listing", func() reply {
		return e.do(t, "eu-west", "GET", "/api/v1/jobs/"+jobID+"/proposals?sort=best", client1, nil)
	}, func(r reply) bool { return r.status == http.StatusOK && len(items(r)) == 1 })
	if it := items(list)[0]; it["id"] != propID || it["freelancer_id"] != freeID || it["status"] != "pending" || it["cover_letter"] != nil ||
		list.header.Get("X-Meridian-Region") != "us-east" {
		t.Fatalf("listing: %q %v", list.header.Get("X-Meridian-Region"), list.body)
	}
	expect(t, "a stranger lists the job's proposals", e.do(t, "us-east", "GET", "/api/v1/jobs/"+jobID+"/proposals", otherClient, nil), http.StatusNotFound, "")
	expect(t, "bad sort", e.do(t, "us-east", "GET", "/api/v1/jobs/"+jobID+"/proposals?sort=worst", client1, nil), http.StatusBadRequest, "")

	// Accepting: only the job's owner; anyone else's proposal is not there to accept.
	expect(t, "another client accepts", e.do(t, "us-east", "POST", "/api/v1/proposals/"+propID+"/accept", otherClient, nil), http.StatusNotFound, "")
	expect(t, "the freelancer accepts", e.do(t, "us-east", "POST", "/api/v1/proposals/"+propID+"/accept", free, nil), http.StatusForbidden, "")
	acc := e.do(t, "ap-south", "POST", "/api/v1/proposals/"+propID+"/accept", client1, nil)
	expect(t, "accept", acc, http.StatusCreated, "")
	if acc.body["status"] != "active" || acc.body["freelancer_id"] != freeID || acc.body["rate"] != 85.5 || acc.header.Get("X-Meridian-Region") != "us-east" {
		t.Fatalf("contract: %v", acc.body)
	}
	ctrID := acc.body["id"].(string)
	expect(t, "accept twice", e.do(t, "eu-west", "POST", "/api/v1/proposals/"+propID+"/accept", client1, nil), http.StatusConflict, "proposal_not_pending")
	if j := e.do(t, "eu-west", "GET", "/api/v1/jobs/"+jobID, "", nil); j.body["status"] != "in_progress" {
		t.Fatalf("job after accept: %v", j.body)
	}

	// Either party reads the contract in the client's region; a stranger does not.
	for _, tok := range []string{client1, free} {
		r := e.do(t, "eu-west", "GET", "/api/v1/contracts/"+ctrID, tok, nil)
		if r.status != http.StatusOK || r.header.Get("X-Meridian-Region") != "us-east" || r.body["status"] != "active" {
			t.Fatalf("party reads the contract: %d %v", r.status, r.body)
		}
	}
	expect(t, "a stranger reads the contract", e.do(t, "ap-south", "GET", "/api/v1/contracts/"+ctrID, stranger, nil), http.StatusNotFound, "")
	// The freelancer lists it from their own shard once the reference row arrived; their proposal is accepted.
	e.eventually(t, "the freelancer's contracts", func() reply {
		return e.do(t, "ap-south", "GET", "/api/v1/contracts/?status=active", free, nil)
	}, func(r reply) bool {
		return r.status == http.StatusOK && len(items(r)) == 1 && items(r)[0]["id"] == ctrID && r.header.Get("X-Meridian-Region") == "eu-west"
	})
	if p := e.do(t, "us-east", "GET", "/api/v1/proposals/"+propID, free, nil); p.body["status"] != "accepted" {
		t.Fatalf("proposal after accept: %v", p.body)
	}
	expect(t, "withdraw an accepted proposal", e.do(t, "us-east", "DELETE", "/api/v1/proposals/"+propID, free, nil), http.StatusConflict, "proposal_not_pending")

	// No review before completion, and only the client completes.
	expect(t, "review before completion", e.do(t, "us-east", "POST", "/api/v1/reviews/", client1,
		map[string]any{"contract_id": ctrID, "rating": 5, "comment": "early"}), http.StatusConflict, "contract_not_completed")
	expect(t, "the freelancer completes", e.do(t, "us-east", "POST", "/api/v1/contracts/"+ctrID+"/complete", free, nil), http.StatusForbidden, "")
	done := e.do(t, "ap-south", "POST", "/api/v1/contracts/"+ctrID+"/complete", client1, nil)
	if done.status != http.StatusOK || done.body["status"] != "completed" || done.body["completed_at"] == nil {
		t.Fatalf("complete: %d %v", done.status, done.body)
	}
	expect(t, "cancel a completed contract", e.do(t, "us-east", "POST", "/api/v1/contracts/"+ctrID+"/cancel", free, nil), http.StatusConflict, "contract_not_active")

	// Both review each other (the freelancer's side may lag the completion by a delivery).
	review := func(tok string, rating int) reply {
		return e.do(t, "eu-west", "POST", "/api/v1/reviews/", tok, map[string]any{"contract_id": ctrID, "rating": rating, "comment": "Great work together."})
	}
	created := func(r reply) bool { return r.status == http.StatusCreated }
	byClient := e.eventually(t, "the client's review", func() reply { return review(client1, 5) }, created)
	byFree := e.eventually(t, "the freelancer's review", func() reply { return review(free, 4) }, created)
	if byClient.body["reviewee_id"] != freeID || byClient.body["status"] != "verified" || byClient.body["contract_id"] != ctrID ||
		byFree.body["reviewee_id"] != clientID || byFree.body["job_id"] != jobID {
		t.Fatalf("reviews: %v / %v", byClient.body, byFree.body)
	}
	expect(t, "a second review", review(client1, 1), http.StatusConflict, "already_reviewed")
	expect(t, "a stranger's review", review(stranger, 1), http.StatusForbidden, "")
	for user, want := range map[string]float64{freeID: 5, clientID: 4} {
		st := e.do(t, "ap-south", "GET", "/api/v1/reviews/stats?user_id="+user, "", nil)
		if st.status != http.StatusOK || st.body["count"] != float64(1) || st.body["average"] != want {
			t.Fatalf("stats of %s: %d %v", user, st.status, st.body)
		}
	}

	// Closing a job that had a contract completes it; it takes no more proposals.
	if r := e.do(t, "us-east", "PATCH", "/api/v1/jobs/"+jobID, client1, map[string]any{"status": "closed"}); r.status != http.StatusOK || r.body["status"] != "completed" {
		t.Fatalf("close: %d %v", r.status, r.body)
	}
	expect(t, "apply to a completed job", e.do(t, "us-east", "POST", "/api/v1/jobs/"+jobID+"/proposals", stranger,
		map[string]any{"cover_letter": "late", "rate": 50}), http.StatusConflict, "job_not_open")
	expect(t, "delete a job with a contract", e.do(t, "us-east", "DELETE", "/api/v1/jobs/"+jobID, client1, nil), http.StatusConflict, "job_has_contracts")

	closed := e.do(t, "us-east", "POST", "/api/v1/jobs/", client1, map[string]any{"title": "Closed early", "description": "x"})
	expect(t, "post a second job", closed, http.StatusCreated, "")
	if r := e.do(t, "ap-south", "PATCH", "/api/v1/jobs/"+closed.body["id"].(string), client1, map[string]any{"status": "closed"}); r.status != http.StatusOK || r.body["status"] != "closed" {
		t.Fatalf("close without a contract: %d %v", r.status, r.body)
	}
	expect(t, "apply to a closed job", e.do(t, "eu-west", "POST", "/api/v1/jobs/"+closed.body["id"].(string)+"/proposals", free,
		map[string]any{"cover_letter": "late", "rate": 50}), http.StatusConflict, "job_not_open")

	// The outcomes the matching engine learns from, each on its owner's shard.
	for _, o := range []struct {
		region, kind string
	}{{"eu-west", "proposal_created"}, {"us-east", "contract_started"}, {"us-east", "contract_completed"}, {"eu-west", "review_posted"}, {"us-east", "review_posted"}} {
		if n := shardQuery(t, e.cluster, o.region, `SELECT count(*) FROM ai.outcomes WHERE kind = $1`, o.kind); n != 1 {
			t.Errorf("%d %s outcomes in %s, want 1", n, o.kind, o.region)
		}
	}

	pools, err := shardpool.New(shardpool.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pools.Close()
	if err := pools.Apply(context.Background(), e.cluster.Topology); err != nil {
		t.Fatal(err)
	}
	rep, err := residency.Audit(context.Background(), e.cluster.Topology, pools, residency.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != residency.Clean {
		t.Fatalf("residency: %s", rep.Summary())
	}
}

// With the freelancer's region down, the client still accepts; the reference row appears once when
// the region is back, and a redelivered message changes nothing.
func TestE2EHiringOutboxAcrossARegionOutage(t *testing.T) {
	e := startE2E(t)
	client1, _ := e.verifiedUser(t, "us-east", "client", "us-east")
	free, _ := e.verifiedUser(t, "eu-west", "freelancer", "eu-west")
	job := e.do(t, "us-east", "POST", "/api/v1/jobs/", client1, map[string]any{"title": "Outage-proof hiring", "description": "x", "skills": []string{"go"}})
	expect(t, "post job", job, http.StatusCreated, "")
	jobID := job.body["id"].(string)
	prop := e.do(t, "eu-west", "POST", "/api/v1/jobs/"+jobID+"/proposals", free, map[string]any{"cover_letter": "Ready.", "rate": 40})
	expect(t, "apply", prop, http.StatusCreated, "")
	propID := prop.body["id"].(string)
	e.eventually(t, "the reference row of the proposal", func() reply {
		return e.do(t, "us-east", "GET", "/api/v1/jobs/"+jobID+"/proposals", client1, nil)
	}, func(r reply) bool { return r.status == http.StatusOK && len(items(r)) == 1 })

	e.cluster.StopRegion("eu-west")
	acc := e.do(t, "us-east", "POST", "/api/v1/proposals/"+propID+"/accept", client1, nil)
	expect(t, "accept with the freelancer's region down", acc, http.StatusCreated, "")
	ctrID := acc.body["id"].(string)
	// The message waits, and is retried, in the client's shard's outbox.
	const pending = `SELECT count(*) FROM core.outbox WHERE kind = 'hiring.contract_sync' AND delivered_at IS NULL AND attempts > 0`
	deadline := time.Now().Add(20 * time.Second)
	for shardQuery(t, e.cluster, "us-east", pending) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the contract's message was never attempted while eu-west was down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Reading the reference row's region is unavailable meanwhile, with a retry hint.
	r := e.do(t, "us-east", "GET", "/api/v1/contracts/", free, nil)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("the freelancer's listing while eu-west is down: %d %v", r.status, r.body)
	}

	e.cluster.StartNode(t, "eu-west")
	e.cluster.WaitPassing(t, "eu-west", 1)
	listed := e.eventually(t, "the freelancer's reference row after the outage", func() reply {
		return e.do(t, "eu-west", "GET", "/api/v1/contracts/", free, nil)
	}, func(r reply) bool { return r.status == http.StatusOK && len(items(r)) == 1 })
	if items(listed)[0]["id"] != ctrID || items(listed)[0]["status"] != "active" {
		t.Fatalf("reference row: %v", listed.body)
	}
	const refs = `SELECT count(*) FROM core.contract_refs`
	const refStamp = `SELECT coalesce(sum(extract(epoch FROM updated_at) * 1000000)::bigint, 0) FROM core.contract_refs`
	const inbox = `SELECT count(*) FROM core.inbox WHERE kind = 'hiring.contract_sync'`
	if n := shardQuery(t, e.cluster, "eu-west", refs); n != 1 {
		t.Fatalf("%d reference rows, want 1", n)
	}
	stamp := shardQuery(t, e.cluster, "eu-west", refStamp)
	if p := e.do(t, "eu-west", "GET", "/api/v1/proposals/"+propID, free, nil); p.body["status"] != "accepted" {
		t.Fatalf("proposal after the outage: %v", p.body)
	}

	// Redeliver the message as if its acknowledgement had been lost: the receiver finds its key in the
	// inbox and changes nothing.
	const redeliver = `UPDATE core.outbox SET delivered_at = NULL, next_attempt_at = now() WHERE kind = 'hiring.contract_sync'`
	const delivered = `SELECT count(*) FROM core.outbox WHERE kind = 'hiring.contract_sync' AND delivered_at IS NULL`
	shardQuery(t, e.cluster, "us-east", `WITH u AS (`+redeliver+` RETURNING 1) SELECT count(*) FROM u`)
	deadline = time.Now().Add(30 * time.Second)
	for shardQuery(t, e.cluster, "us-east", delivered) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the redelivered message was not delivered again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, s, in := shardQuery(t, e.cluster, "eu-west", refs), shardQuery(t, e.cluster, "eu-west", refStamp), shardQuery(t, e.cluster, "eu-west", inbox); n != 1 || s != stamp || in != 1 {
		t.Fatalf("after redelivery: %d reference rows (want 1), stamp %d → %d, %d inbox keys (want 1)", n, stamp, s, in)
	}
}
