package jobs

import (
	"context"
	"net/url"
	"testing"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// newHarness starts three regional nodes serving the jobs routes.
func newHarness(t *testing.T) *apitest.Harness {
	t.Helper()
	return apitest.New(t, apitest.Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		s, err := New(a, DefaultConfig(), Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Routes()
	}})
}

// shardOf names the shard that holds k.
func shardOf(t *testing.T, h *apitest.Harness, k shardkey.KeyspaceID) string {
	t.Helper()
	r, err := h.Pools.Route(k)
	if err != nil {
		t.Fatal(err)
	}
	return r.Shard
}

// usersOnEveryShard creates users of role in region until each of the region's shards holds at least n,
// and returns them grouped by shard.
func usersOnEveryShard(t *testing.T, h *apitest.Harness, role authn.Role, region string, n int) map[string][]apitest.User {
	t.Helper()
	out := map[string][]apitest.User{}
	shards := h.Topology.ShardsIn(region)
	for tries := 0; ; tries++ {
		done := true
		for _, s := range shards {
			if len(out[s.Name]) < n {
				done = false
			}
		}
		if done {
			return out
		}
		if tries > 200 {
			t.Fatalf("could not spread users over %s's shards: %v", region, out)
		}
		u := h.CreateUser(t, role, region)
		s := shardOf(t, h, u.KSID)
		out[s] = append(out[s], u)
	}
}

// postJob creates a job as u and fails the test unless it is created.
func postJob(t *testing.T, h *apitest.Harness, u apitest.User, body map[string]any) Job {
	t.Helper()
	r := h.Do(t, u.Region, apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: u.Token, Body: body})
	if r.Status != 201 {
		t.Fatalf("create job: %d %s", r.Status, r.Body)
	}
	var j Job
	r.JSON(t, &j)
	return j
}

// search runs GET /jobs/search in region with the query.
func search(t *testing.T, h *apitest.Harness, region string, q url.Values) (*apitest.Response, SearchPage) {
	t.Helper()
	r := h.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/jobs/search?" + q.Encode()})
	var pg SearchPage
	if r.Status == 200 {
		r.JSON(t, &pg)
	}
	return r, pg
}

// searchAll follows next_cursor to the end and returns every item, failing on a repeated ID.
func searchAll(t *testing.T, h *apitest.Harness, region string, q url.Values) []SearchItem {
	t.Helper()
	var all []SearchItem
	seen := map[shardkey.ID]bool{}
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("too many pages")
		}
		r, pg := search(t, h, region, q)
		if r.Status != 200 {
			t.Fatalf("search %v: %d %s", q, r.Status, r.Body)
		}
		for _, it := range pg.Items {
			if seen[it.ID] {
				t.Fatalf("page %d repeats %s", page, it.ID)
			}
			seen[it.ID] = true
		}
		all = append(all, pg.Items...)
		if pg.NextCursor == "" {
			return all
		}
		q = cloneValues(q)
		q.Set("cursor", pg.NextCursor)
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func ids(items []SearchItem) []shardkey.ID {
	out := make([]shardkey.ID, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// breakShard applies a copy of the topology in which shard's port is 1 (nothing listens there), with a
// higher version, so that every query to it fails.
func breakShard(t *testing.T, h *apitest.Harness, shard string) {
	t.Helper()
	topo := h.Pools.Table().Topology().Clone()
	topo.Version++
	for i := range topo.Shards {
		if topo.Shards[i].Name == shard {
			topo.Shards[i].Conn.Port = 1
		}
	}
	if err := h.Pools.Apply(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
}
