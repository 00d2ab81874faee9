package jobs

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestSearch(t *testing.T) {
	h := newHarness(t)
	eu := usersOnEveryShard(t, h, authn.Client, "eu-west", 3)
	e1, e2 := eu["eu-west-1"], eu["eu-west-2"]
	us := h.CreateUser(t, authn.Client, "us-east")
	ap := h.CreateUser(t, authn.Client, "ap-south")

	titleHit := postJob(t, h, e1[0], map[string]any{"title": "Golang backend engineer", "description": "Build services.", "skills": []string{"go", "postgresql"}})
	descHit := postJob(t, h, e2[0], map[string]any{"title": "Frontend designer", "description": "Some golang would help.", "skills": []string{"css"}})
	otherShard := postJob(t, h, e2[1], map[string]any{"title": "Golang and Kubernetes expert", "skills": []string{"go", "kubernetes"}})
	closed := postJob(t, h, e1[1], map[string]any{"title": "Golang intern"})
	if r := h.Do(t, "eu-west", apitest.Request{Method: "PATCH", Path: "/api/v1/jobs/" + closed.ID.String(), Token: e1[1].Token, Body: `{"status": "closed"}`}); r.Status != 200 {
		t.Fatalf("close: %d %s", r.Status, r.Body)
	}
	data := postJob(t, h, e1[2], map[string]any{"title": "Data scientist", "skills": []string{"python", "postgresql"}})
	var rust []Job
	for i := 0; i < 12; i++ {
		u := append(e1, e2...)[i%6]
		rust = append(rust, postJob(t, h, u, map[string]any{"title": fmt.Sprintf("Rust developer %d", i),
			"description": strings.Repeat("rust ", i%4)}))
	}
	usJob := postJob(t, h, us, map[string]any{"title": "Golang SRE", "skills": []string{"go"}})
	apJob := postJob(t, h, ap, map[string]any{"title": "Platform engineer", "description": "golang, golang and more golang"})

	t.Run("relevance across both shards", func(t *testing.T) {
		r, pg := search(t, h, "eu-west", url.Values{"q": {"golang"}})
		if r.Status != 200 || pg.Partial || len(pg.FailedShards) != 0 || pg.NextCursor != "" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		got := ids(pg.Items)
		if len(got) != 3 || !slices.Contains(got, titleHit.ID) || !slices.Contains(got, otherShard.ID) || got[2] != descHit.ID {
			t.Fatalf("got %v, want the two title matches (one per shard) then the description match", got)
		}
		shards := map[string]bool{}
		for i, it := range pg.Items {
			shards[shardOf(t, h, it.OwnerID.KeyspaceID())] = true
			if it.Status != StatusOpen || it.Rank <= 0 {
				t.Fatalf("item %+v", it)
			}
			if i > 0 && compareRanked(pg.Items[i-1], it) >= 0 {
				t.Fatalf("items out of order at %d: %v", i, pg.Items)
			}
		}
		if !shards["eu-west-1"] || !shards["eu-west-2"] {
			t.Fatalf("results came from %v, want both shards", shards)
		}
		if pg.Items[0].Rank <= pg.Items[2].Rank {
			t.Fatal("a title match does not outrank a description match")
		}
		if !strings.Contains(string(r.Body), `"failed_shards":[]`) || !strings.Contains(string(r.Body), `"partial":false`) {
			t.Fatalf("partial and failed_shards must always be present: %s", r.Body)
		}
	})

	t.Run("skills filter and skill ranking", func(t *testing.T) {
		_, pg := search(t, h, "eu-west", url.Values{"q": {"golang"}, "skills": {"Kubernetes"}})
		if got := ids(pg.Items); len(got) != 1 || got[0] != otherShard.ID {
			t.Fatalf("q+skills: %v", got)
		}
		// Overlap first (2 > 1), then the newer job first.
		_, pg = search(t, h, "eu-west", url.Values{"skills": {"postgresql, GO"}})
		want := []shardkey.ID{titleHit.ID, data.ID, otherShard.ID}
		if got := ids(pg.Items); !slices.Equal(got, want) {
			t.Fatalf("skills only: %v, want %v", got, want)
		}
		if pg.Items[0].Rank != 2 || pg.Items[1].Rank != 1 {
			t.Fatalf("skill ranks %v %v", pg.Items[0].Rank, pg.Items[1].Rank)
		}
	})

	t.Run("pages have no repeats and no gaps", func(t *testing.T) {
		_, full := search(t, h, "eu-west", url.Values{"q": {"rust developer"}, "limit": {"100"}})
		if len(full.Items) != len(rust) || full.NextCursor != "" {
			t.Fatalf("one page: %d items, cursor %q", len(full.Items), full.NextCursor)
		}
		for _, limit := range []string{"1", "5", "12"} {
			paged := searchAll(t, h, "eu-west", url.Values{"q": {"rust developer"}, "limit": {limit}})
			if !slices.Equal(ids(paged), ids(full.Items)) {
				t.Fatalf("pages of %s: %v\nwant %v", limit, ids(paged), ids(full.Items))
			}
		}
		paged := searchAll(t, h, "eu-west", url.Values{"skills": {"go,postgresql,python,kubernetes"}, "limit": {"1"}})
		if len(paged) != 3 {
			t.Fatalf("skill pages: %d items", len(paged))
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		_, first := search(t, h, "eu-west", url.Values{"q": {"rust"}, "limit": {"2"}})
		for name, q := range map[string]url.Values{
			"neither q nor skills":   {},
			"blank q":                {"q": {"  "}},
			"bad scope":              {"q": {"x"}, "scope": {"planet"}},
			"bad limit":              {"q": {"x"}, "limit": {"-1"}},
			"garbage cursor":         {"q": {"x"}, "cursor": {"%%%"}},
			"cursor of another q":    {"q": {"golang"}, "cursor": {first.NextCursor}},
			"cursor of region scope": {"q": {"rust"}, "scope": {"global"}, "cursor": {first.NextCursor}},
			"long q":                 {"q": {strings.Repeat("q", MaxQuery+1)}},
		} {
			if r, _ := search(t, h, "eu-west", q); r.Status != 400 || r.ErrorCode() != "invalid_request" {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/internal/jobs/search?q=golang"}); r.Status != 403 {
			t.Errorf("internal route with a router's certificate: %d", r.Status)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/jobs/search?q=golang", Body: "{}"}); r.Status != 405 {
			t.Errorf("POST to search: %d", r.Status)
		}
	})

	t.Run("global scope", func(t *testing.T) {
		r, pg := search(t, h, "us-east", url.Values{"q": {"golang"}, "scope": {"global"}})
		if r.Status != 200 || pg.Partial {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		got := ids(pg.Items)
		for _, want := range []shardkey.ID{titleHit.ID, otherShard.ID, descHit.ID, usJob.ID, apJob.ID} {
			if !slices.Contains(got, want) {
				t.Fatalf("global search lacks %s: %v", want, got)
			}
		}
		if slices.Contains(got, closed.ID) || len(got) != 5 {
			t.Fatalf("global search: %v", got)
		}
		for i := 1; i < len(pg.Items); i++ {
			if compareRanked(pg.Items[i-1], pg.Items[i]) >= 0 {
				t.Fatalf("merged out of order at %d", i)
			}
		}
		// The cursor pages consistently across regions, whichever node serves the pages.
		for _, region := range apitest.Regions {
			for _, limit := range []string{"1", "2"} {
				paged := searchAll(t, h, region, url.Values{"q": {"golang"}, "scope": {"global"}, "limit": {limit}})
				if !slices.Equal(ids(paged), got) {
					t.Fatalf("%s, pages of %s: %v\nwant %v", region, limit, ids(paged), got)
				}
			}
		}
		// The region scope stays in its region.
		_, local := search(t, h, "us-east", url.Values{"q": {"golang"}})
		if l := ids(local.Items); len(l) != 1 || l[0] != usJob.ID {
			t.Fatalf("us-east region search: %v", l)
		}
	})

	t.Run("a region that does not answer", func(t *testing.T) {
		h.Nodes["ap-south"].Server.Close()
		r, pg := search(t, h, "us-east", url.Values{"q": {"golang"}, "scope": {"global"}})
		if r.Status != 200 || !pg.Partial || !slices.Equal(pg.FailedShards, []string{"ap-south-1", "ap-south-2"}) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if got := ids(pg.Items); len(got) != 4 || slices.Contains(got, apJob.ID) || !slices.Contains(got, usJob.ID) {
			t.Fatalf("without ap-south: %v", got)
		}
	})

	t.Run("a shard that does not answer", func(t *testing.T) {
		breakShard(t, h, "eu-west-2")
		r, pg := search(t, h, "eu-west", url.Values{"q": {"golang"}})
		if r.Status != 200 || !pg.Partial || !slices.Equal(pg.FailedShards, []string{"eu-west-2"}) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if got := ids(pg.Items); !slices.Equal(got, []shardkey.ID{titleHit.ID}) {
			t.Fatalf("eu-west-1's results: %v", got)
		}
		r, pg = search(t, h, "us-east", url.Values{"q": {"golang"}, "scope": {"global"}})
		if r.Status != 200 || !pg.Partial || !slices.Equal(pg.FailedShards, []string{"ap-south-1", "ap-south-2", "eu-west-2"}) {
			t.Fatalf("global: %d %s", r.Status, r.Body)
		}
		if got := ids(pg.Items); len(got) != 2 || !slices.Contains(got, titleHit.ID) || !slices.Contains(got, usJob.ID) {
			t.Fatalf("global without eu-west-2: %v", got)
		}
		// Every shard of the region down: nothing to show, and a status that says retry.
		breakShard(t, h, "eu-west-1")
		if r, _ := search(t, h, "eu-west", url.Values{"q": {"golang"}}); r.Status != 503 || r.Header.Get("Retry-After") == "" {
			t.Fatalf("no shard: %d %s", r.Status, r.Body)
		}
		// A region whose node answers 503 counts as failed in a global search.
		r, pg = search(t, h, "us-east", url.Values{"q": {"golang"}, "scope": {"global"}})
		if r.Status != 200 || !slices.Equal(pg.FailedShards, []string{"ap-south-1", "ap-south-2", "eu-west-1", "eu-west-2"}) ||
			!slices.Equal(ids(pg.Items), []shardkey.ID{usJob.ID}) {
			t.Fatalf("global with only us-east: %d %s", r.Status, r.Body)
		}
	})
}
