package jobs

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// putProfile writes u's profile straight into its shard.
func putProfile(t *testing.T, h *apitest.Harness, u apitest.User, skills []string, available bool) {
	t.Helper()
	routed, err := h.Pools.Route(u.KSID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routed.Pool.Exec(context.Background(),
		`INSERT INTO core.profiles (ksid, user_id, skills, available) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (ksid, user_id) DO UPDATE SET skills = EXCLUDED.skills, available = EXCLUDED.available`,
		u.KSID.Bytes(), u.ID.Bytes(), skills, available); err != nil {
		t.Fatal(err)
	}
}

type freelancerPage struct {
	Items    []MatchedFreelancer `json:"items"`
	Fairness Fairness            `json:"fairness"`
}

type jobPage struct {
	Items    []MatchedJob `json:"items"`
	Fairness Fairness     `json:"fairness"`
}

func TestMatching(t *testing.T) {
	h := newHarness(t)
	clients := usersOnEveryShard(t, h, authn.Client, "eu-west", 1)
	owner, otherClient := clients["eu-west-1"][0], clients["eu-west-2"][0]
	fl := usersOnEveryShard(t, h, authn.Freelancer, "eu-west", 3)
	perfect, partial, sameScore := fl["eu-west-1"][0], fl["eu-west-2"][0], fl["eu-west-1"][1]
	unavailable, unrelated, noProfile := fl["eu-west-2"][1], fl["eu-west-1"][2], fl["eu-west-2"][2]
	faraway := h.CreateUser(t, authn.Freelancer, "us-east")
	farClient := h.CreateUser(t, authn.Client, "us-east")

	putProfile(t, h, perfect, []string{"go", "postgresql", "kubernetes"}, true)
	putProfile(t, h, partial, []string{"go", "css"}, true)           // 1 shared of 4: 0.25
	putProfile(t, h, sameScore, []string{"kubernetes", "sql"}, true) // 1 shared of 4: 0.25
	putProfile(t, h, unavailable, []string{"go", "postgresql", "kubernetes"}, false)
	putProfile(t, h, unrelated, []string{"design"}, true)
	putProfile(t, h, faraway, []string{"go", "postgresql", "kubernetes"}, true)
	putProfile(t, h, otherClient, []string{"go", "postgresql", "kubernetes"}, true) // a client with a profile is no candidate

	job := postJob(t, h, owner, map[string]any{"title": "Platform work", "skills": []string{"Go", "PostgreSQL", "Kubernetes"}})
	match := func(region, token, query string) *apitest.Response {
		return h.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/jobs/matching" + query, Token: token})
	}

	t.Run("freelancers for a job", func(t *testing.T) {
		r := match("eu-west", owner.Token, "?job_id="+job.ID.String())
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		var pg freelancerPage
		r.JSON(t, &pg)
		if len(pg.Items) != 3 || pg.Items[0].FreelancerID != perfect.ID || pg.Items[0].Score != 1 {
			t.Fatalf("items %+v", pg.Items)
		}
		tied := []shardkey.ID{pg.Items[1].FreelancerID, pg.Items[2].FreelancerID}
		if !slices.Contains(tied, partial.ID) || !slices.Contains(tied, sameScore.ID) || pg.Items[1].Score != 0.25 || pg.Items[2].Score != 0.25 {
			t.Fatalf("tied items %+v", pg.Items[1:])
		}
		if got := strings.Join(pg.Items[0].Reasons, "; "); got != "shared skills: go, postgresql, kubernetes" {
			t.Fatalf("reasons %q", got)
		}
		for _, it := range pg.Items {
			if it.FreelancerID == partial.ID && strings.Join(it.Reasons, "; ") != "shared skills: go; missing skills: postgresql, kubernetes" {
				t.Fatalf("reasons %q", it.Reasons)
			}
		}
		f := pg.Fairness
		// Considered: every available freelancer of the region (perfect, partial, sameScore, unrelated).
		if f.Method != "skill_overlap" || f.CandidatesConsidered != 4 || f.CandidatesWithOverlap != 3 || f.Returned != 3 ||
			f.Partial || len(f.ShardsFailed) != 0 || f.Region != "eu-west" || f.TieBreak == "" || !slices.Contains(f.SignalsUsed, "skills") {
			t.Fatalf("fairness %+v", f)
		}
		// The order is deterministic.
		again := match("eu-west", owner.Token, "?job_id="+job.ID.String())
		var pg2 freelancerPage
		again.JSON(t, &pg2)
		for i := range pg.Items {
			if pg.Items[i].FreelancerID != pg2.Items[i].FreelancerID {
				t.Fatal("the order changed between two identical requests")
			}
		}
		// limit cuts after ranking.
		r = match("eu-west", owner.Token, "?limit=1&job_id="+job.ID.String())
		var one freelancerPage
		r.JSON(t, &one)
		if len(one.Items) != 1 || one.Items[0].FreelancerID != perfect.ID || one.Fairness.CandidatesWithOverlap != 3 {
			t.Fatalf("limit 1: %s", r.Body)
		}
	})

	t.Run("a job without skills", func(t *testing.T) {
		bare := postJob(t, h, owner, map[string]any{"title": "Anything"})
		r := match("eu-west", owner.Token, "?job_id="+bare.ID.String())
		var pg freelancerPage
		r.JSON(t, &pg)
		if r.Status != 200 || len(pg.Items) != 0 || len(pg.Fairness.Notes) == 0 || !strings.Contains(string(r.Body), `"items":[]`) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	t.Run("jobs for a freelancer", func(t *testing.T) {
		near := postJob(t, h, otherClient, map[string]any{"title": "Go and SQL", "skills": []string{"go", "sql"}})
		far := postJob(t, h, otherClient, map[string]any{"title": "Designer", "skills": []string{"design"}})
		shut := postJob(t, h, otherClient, map[string]any{"title": "Closed", "skills": []string{"go", "postgresql", "kubernetes"}})
		if r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/jobs/" + shut.ID.String(), Token: otherClient.Token, Body: `{"status": "closed"}`}); r.Status != 200 {
			t.Fatal(r.Status)
		}
		postJob(t, h, farClient, map[string]any{"title": "Elsewhere", "skills": []string{"go", "postgresql", "kubernetes"}})
		r := match("eu-west", perfect.Token, "")
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		var pg jobPage
		r.JSON(t, &pg)
		got := make([]shardkey.ID, len(pg.Items))
		for i, it := range pg.Items {
			got[i] = it.JobID
			if it.Job.ID != it.JobID {
				t.Fatalf("item %+v", it)
			}
		}
		if !slices.Equal(got, []shardkey.ID{job.ID, near.ID}) || pg.Items[0].Score != 1 || pg.Items[1].Score != 0.25 {
			t.Fatalf("jobs %v (%s)", got, r.Body)
		}
		if strings.Join(pg.Items[1].Reasons, "; ") != "shared skills: go; the job also asks for: sql" {
			t.Fatalf("reasons %q", pg.Items[1].Reasons)
		}
		// Open jobs of the region: job, the skill-less one, near, far.
		if pg.Fairness.CandidatesConsidered != 4 || pg.Fairness.CandidatesWithOverlap != 2 {
			t.Fatalf("fairness %+v", pg.Fairness)
		}
		if slices.Contains(got, far.ID) || slices.Contains(got, shut.ID) {
			t.Fatal("a job without overlap, or not open, was matched")
		}
		r = match("eu-west", noProfile.Token, "")
		var empty jobPage
		r.JSON(t, &empty)
		if r.Status != 200 || len(empty.Items) != 0 || len(empty.Fairness.Notes) == 0 {
			t.Fatalf("no profile: %d %s", r.Status, r.Body)
		}
	})

	t.Run("authorisation", func(t *testing.T) {
		for name, c := range map[string]struct {
			region, token, query string
			status               int
		}{
			"another client's job":    {"eu-west", otherClient.Token, "?job_id=" + job.ID.String(), 404},
			"a freelancer with a job": {"eu-west", perfect.Token, "?job_id=" + job.ID.String(), 404},
			"unknown job":             {"eu-west", owner.Token, "?job_id=" + mustID(t, h, owner.KSID), 404},
			"malformed job":           {"eu-west", owner.Token, "?job_id=job_x", 400},
			"a user ID as job":        {"eu-west", owner.Token, "?job_id=" + owner.ID.String(), 400},
			"job in another region":   {"us-east", farClient.Token, "?job_id=" + job.ID.String(), 421},
			"client without job":      {"eu-west", owner.Token, "", 400},
			"no token":                {"eu-west", "", "?job_id=" + job.ID.String(), 401},
			"freelancer elsewhere":    {"eu-west", faraway.Token, "", 421},
			"bad limit":               {"eu-west", owner.Token, "?limit=500&job_id=" + job.ID.String(), 400},
		} {
			r := match(c.region, c.token, c.query)
			if r.Status != c.status {
				t.Errorf("%s: %d %s, want %d", name, r.Status, r.Body, c.status)
			}
			if c.status == 421 && r.Header.Get(wire.ReplayRegion) == "" {
				t.Errorf("%s: no replay header", name)
			}
		}
		admin := h.CreateUser(t, authn.Admin, "eu-west")
		if r := match("eu-west", admin.Token, "?job_id="+job.ID.String()); r.Status != 403 {
			t.Errorf("admin: %d", r.Status)
		}
	})

	t.Run("a shard that does not answer", func(t *testing.T) {
		breakShard(t, h, "eu-west-2")
		r := match("eu-west", owner.Token, "?job_id="+job.ID.String())
		var pg freelancerPage
		r.JSON(t, &pg)
		if r.Status != 200 || !pg.Fairness.Partial || !slices.Equal(pg.Fairness.ShardsFailed, []string{"eu-west-2"}) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		for _, it := range pg.Items {
			if shardOf(t, h, it.FreelancerID.KeyspaceID()) != "eu-west-1" {
				t.Fatalf("an item from the failed shard: %+v", it)
			}
		}
		if len(pg.Items) != 2 || pg.Fairness.CandidatesConsidered != 3 {
			t.Fatalf("eu-west-1 alone: %s", r.Body)
		}
	})
}

func mustID(t *testing.T, h *apitest.Harness, k shardkey.KeyspaceID) string {
	t.Helper()
	id, err := h.IDs.New(shardkey.KindJob, k)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}
