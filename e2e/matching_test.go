package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/matchctl"
	"github.com/8thdegree/meridian/deploy/local"
)

// makeAdmin gives a user the admin role straight in their shard (there is no endpoint that grants
// roles) and returns a session that carries it.
func (e *e2e) makeAdmin(t *testing.T, email, region string) string {
	t.Helper()
	if n := shardQuery(t, e.cluster, region, `WITH u AS (UPDATE auth.users SET role = 'admin' WHERE email_normalized = $1 RETURNING 1)
		SELECT count(*) FROM u`, email); n != 1 {
		t.Fatalf("made %d admins of %s", n, email)
	}
	r := e.do(t, region, "POST", "/api/v1/auth/login", "", map[string]any{"email": email, "password": "benchmark password 1"})
	if r.status != http.StatusOK {
		t.Fatalf("admin login: %d %v", r.status, r.body)
	}
	return r.body["access_token"].(string)
}

// The matching engine through the routers: explained, fairness-checked lists of freelancers for a job
// and of jobs for a freelancer, in the region and across regions; events on a list; the admin
// reports; and a model trained, promoted by hand and rolled back with matchctl.
func TestE2EMatching(t *testing.T) {
	e := startE2E(t)
	client1, _ := e.verifiedUser(t, "eu-west", "client", "us-east")
	type fl struct {
		region, headline string
		skills           []string
		country          string
	}
	fls := []fl{
		{"us-east", "Go and PostgreSQL engineer: sharding, replication", []string{"go", "postgresql", "sharding"}, "US"},
		{"us-east", "React and CSS designer", []string{"react", "css", "figma"}, "US"},
		{"us-east", "Go backend developer", []string{"go", "redis"}, "CA"},
		{"eu-west", "PostgreSQL sharding and Go services", []string{"go", "postgresql", "sharding"}, "DE"},
		{"ap-south", "Go developer for databases", []string{"go", "postgresql"}, "IN"},
	}
	ids := make([]string, len(fls))
	toks := make([]string, len(fls))
	for i, f := range fls {
		toks[i], ids[i] = e.verifiedUser(t, "us-east", "freelancer", f.region)
		r := e.do(t, "ap-south", "PUT", "/api/v1/users/profile", toks[i], map[string]any{"headline": f.headline, "bio": f.headline + ".",
			"skills": f.skills, "hourly_rate": 60 + 10*i, "country": f.country, "available": true})
		if r.status != http.StatusOK {
			t.Fatalf("profile %d: %d %v", i, r.status, r.body)
		}
	}
	job := e.do(t, "us-east", "POST", "/api/v1/jobs/", client1, map[string]any{"title": "Shard our PostgreSQL with Go",
		"description": "Sharding and replication of a PostgreSQL marketplace, services in Go.", "skills": []string{"go", "postgresql", "sharding"},
		"budget_min": 50, "budget_max": 120, "currency": "USD"})
	expect(t, "post job", job, http.StatusCreated, "")
	jobID := job.body["id"].(string)

	// The vectors are computed through the outbox and indexed within moments.
	list := e.eventually(t, "freelancers for the job", func() reply {
		return e.do(t, "eu-west", "GET", "/api/v1/jobs/matching?job_id="+jobID, client1, nil)
	}, func(r reply) bool { return r.status == http.StatusOK && len(items(r)) == 3 })
	got := items(list)
	if got[0]["freelancer_id"] != ids[0] || got[len(got)-1]["freelancer_id"] != ids[1] {
		t.Fatalf("ranking: %v", got)
	}
	for _, it := range got {
		sum := 0.0
		reasons := it["reasons"].([]any)
		if len(reasons) != 5 {
			t.Fatalf("reasons: %v", reasons)
		}
		for _, r := range reasons {
			m := r.(map[string]any)
			sum += m["contribution"].(float64)
			if m["text"] == "" {
				t.Fatalf("reason without text: %v", m)
			}
		}
		if math.Abs(sum-it["score"].(float64)) > 1e-9 || it["region"] != "us-east" {
			t.Fatalf("contributions %v do not add up to the score: %v", sum, it)
		}
	}
	fair := list.body["fairness"].(map[string]any)
	if fair["exposure"] == nil || fair["impact_ratio"] == nil || list.body["list_id"] == "" || list.body["model"].(map[string]any)["version"] != float64(0) {
		t.Fatalf("list: %v", list.body)
	}
	listID := list.body["list_id"].(string)

	// Global scope: every region ranks its own, the node merges.
	regionsOf := func(r reply) map[string]bool {
		regions := map[string]bool{}
		for _, it := range items(r) {
			regions[it["region"].(string)] = true
		}
		return regions
	}
	global := e.eventually(t, "a global list", func() reply {
		return e.do(t, "ap-south", "GET", "/api/v1/jobs/matching?scope=global&limit=10&job_id="+jobID, client1, nil)
	}, func(r reply) bool { return r.status == http.StatusOK && len(regionsOf(r)) == 3 })
	if global.body["partial"] != false || len(items(global)) != 5 {
		t.Fatalf("global: %d %v", global.status, global.body)
	}
	// The other direction: the eu-west freelancer finds the us-east job only across regions.
	e.eventually(t, "jobs for a freelancer", func() reply {
		return e.do(t, "us-east", "GET", "/api/v1/jobs/matching?scope=global", toks[3], nil)
	}, func(r reply) bool {
		return r.status == http.StatusOK && len(items(r)) >= 1 && items(r)[0]["job_id"] == jobID
	})
	expect(t, "a stranger's job", e.do(t, "us-east", "GET", "/api/v1/jobs/matching?job_id="+jobID, toks[0], nil), http.StatusNotFound, "")
	expect(t, "bad scope", e.do(t, "us-east", "GET", "/api/v1/jobs/matching?scope=world&job_id="+jobID, client1, nil), http.StatusBadRequest, "")

	// Events name what was shown.
	ev := func(item string, pos int, list string) reply {
		return e.do(t, "eu-west", "POST", "/api/v1/matching/events", client1, map[string]any{"list_id": list, "type": "opened", "item_id": item, "position": pos})
	}
	expect(t, "open the first", ev(ids[0], 1, listID), http.StatusAccepted, "")
	expect(t, "the wrong position", ev(ids[0], 2, listID), http.StatusBadRequest, "")
	expect(t, "an unknown list", ev(ids[0], 1, "00000000-0000-4000-8000-000000000000"), http.StatusNotFound, "")
	// A hire the trainer can learn from.
	prop := e.do(t, "us-east", "POST", "/api/v1/jobs/"+jobID+"/proposals", toks[0], map[string]any{"cover_letter": "Hello", "rate": 80})
	expect(t, "apply", prop, http.StatusCreated, "")

	// The admin reports.
	adminEmail := fmt.Sprintf("admin-%d@e2e.test", time.Now().UnixNano())
	if _, err := e.cluster.RegisterVerified(client, e.routers["us-east"], adminEmail, "client", "us-east"); err != nil {
		t.Fatal(err)
	}
	admin := e.makeAdmin(t, adminEmail, "us-east")
	expect(t, "fairness for a client", e.do(t, "us-east", "GET", "/api/v1/admin/fairness", client1, nil), http.StatusForbidden, "")
	fr := e.do(t, "ap-south", "GET", "/api/v1/admin/fairness?region=us-east", admin, nil)
	if fr.status != http.StatusOK || len(fr.body["days"].([]any)) != 1 {
		t.Fatalf("fairness report: %d %v", fr.status, fr.body)
	}
	day := fr.body["days"].([]any)[0].(map[string]any)
	if day["lists"].(float64) < 2 || day["exposure"].(map[string]any)["country"] == nil {
		t.Fatalf("fairness day: %v", day)
	}
	if r := e.do(t, "us-east", "GET", "/api/v1/admin/fairness?region=eu-west", admin, nil); r.status != http.StatusOK {
		t.Fatalf("another region's fairness: %d %v", r.status, r.body)
	}

	// Train, roll forward by hand, roll back, all from the command.
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := matchctl.Run(context.Background(), append([]string{"--consul", e.cluster.ConsulAddr, "--key", e.cluster.Key, "--consul-token-file",
			e.cluster.ConsulAgent.TokenFile(local.RoleShardmgr), "--region", "us-east"}, args...),
			matchctl.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
		return code, out.String() + errb.String()
	}
	if code, out := run("train", "--note", "e2e"); code != 0 || !strings.Contains(out, "version 1") {
		t.Fatalf("train: %d %s", code, out)
	}
	if code, out := run("promote", "1"); code != 0 && code != 3 {
		t.Fatalf("promote: %d %s", code, out)
	}
	if code, out := run("rollback", "1"); code != 0 {
		t.Fatalf("rollback to 1: %d %s", code, out)
	}
	models := e.do(t, "eu-west", "GET", "/api/v1/admin/matching/models", admin, nil)
	if models.status != http.StatusOK {
		t.Fatalf("models: %d %v", models.status, models.body)
	}
	var us map[string]any
	for _, r := range models.body["regions"].([]any) {
		if m := r.(map[string]any); m["region"] == "us-east" {
			us = m
		}
	}
	if us == nil || us["serving"] != float64(1) || len(us["models"].([]any)) != 1 {
		t.Fatalf("us-east models: %v", models.body)
	}
	if code, out := run("rollback", "0"); code != 0 {
		t.Fatalf("rollback to the hand-set weights: %d %s", code, out)
	}
	if code, out := run("models"); code != 0 || !strings.Contains(out, "e2e") {
		t.Fatalf("models: %d %s", code, out)
	}
	if code, _ := run("promote", "x"); code != 2 {
		t.Fatalf("promote x: exit %d, want 2", code)
	}
}
