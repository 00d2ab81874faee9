package matching

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/matching/embed"
	"github.com/8thdegree/meridian/api/internal/matching/fairness"
	"github.com/8thdegree/meridian/api/internal/matching/index"
	"github.com/8thdegree/meridian/api/internal/matching/score"
	"github.com/8thdegree/meridian/api/internal/matching/synth"
	"github.com/8thdegree/meridian/api/internal/outbox"
	"github.com/8thdegree/meridian/api/internal/profiles"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type noRatings struct{}

func (noRatings) Rating(context.Context, shardkey.ID) (int, float64, error) { return 0, 0, nil }

// env is three regions serving profiles, jobs and the engine. No task runs: the tests embed, deliver
// and refresh themselves, so that what they check does not depend on timing.
type env struct {
	h   *apitest.Harness
	mu  sync.Mutex
	svc map[string]*Service
	obs map[string]*outbox.Outbox
}

func start(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	e := &env{svc: map[string]*Service{}, obs: map[string]*outbox.Outbox{}}
	e.h = apitest.New(t, apitest.Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		ob, err := outbox.New(a, outbox.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.ShadowRate = 0
		if mutate != nil {
			mutate(&cfg)
		}
		mt, err := New(a, cfg, ob, embed.NewLocal(256))
		if err != nil {
			t.Fatal(err)
		}
		pf, err := profiles.New(a, noRatings{}, mt)
		if err != nil {
			t.Fatal(err)
		}
		js, err := jobs.New(a, jobs.DefaultConfig(), jobs.Hooks{Watcher: mt})
		if err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		e.svc[a.Region], e.obs[a.Region] = mt, ob
		e.mu.Unlock()
		return append(append(mt.Routes(), pf.Routes()...), js.Routes()...)
	}})
	return e
}

// settle embeds whatever is missing and loads every region's index.
func (e *env) settle(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, s := range e.svc {
		e.obs[s.a.Region].Pass(ctx)
		s.backfillOnce(ctx)
		if err := s.refresh(ctx, true); err != nil {
			t.Fatal(err)
		}
		if err := s.refreshRatings(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) get(t *testing.T, region, path string, u apitest.User) (int, Page) {
	t.Helper()
	r := e.h.Do(t, region, apitest.Request{Method: "GET", Path: path, Token: u.Token})
	var p Page
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
	}
	return r.Status, p
}

// ndcg is NDCG@k of the ranked freelancers for a job, graded by the hidden utility (gain 2^u − 1),
// against the ideal order of every eligible candidate.
func ndcg(m *synth.Market, job int, ranked []int, k int) float64 {
	dcg := func(grades []int) float64 {
		s := 0.0
		for i, g := range grades {
			if i == k {
				break
			}
			s += (math.Pow(2, float64(g)) - 1) / math.Log2(float64(i+2))
		}
		return s
	}
	var got, ideal []int
	for _, f := range ranked {
		got = append(got, m.Utility(job, f))
	}
	for _, f := range m.Candidates(job) {
		ideal = append(ideal, m.Utility(job, f))
	}
	slices.Sort(ideal)
	slices.Reverse(ideal)
	if dcg(ideal) == 0 {
		return math.NaN()
	}
	return dcg(got) / dcg(ideal)
}

// On a generated marketplace loaded into the real shards, the engine's lists rank the freelancers the
// hidden utility prefers well above the skill-overlap (Jaccard) baseline; both figures are logged.
func TestEngineBeatsJaccardOnAGeneratedMarket(t *testing.T) {
	e := start(t, nil)
	opts := synth.DefaultOptions()
	opts.Freelancers, opts.Jobs = 450, 45
	m := synth.Generate(7, opts)
	ctx := context.Background()
	byID := map[shardkey.ID]int{}
	rid := func(kind shardkey.Kind) []byte {
		id, err := e.h.IDs.New(kind, shardkey.KeyspaceID(uint64(len(byID)+1)))
		if err != nil {
			t.Fatal(err)
		}
		return id.Bytes()
	}
	for i, f := range m.Freelancers {
		u := e.h.CreateUser(t, authn.Freelancer, f.Region)
		byID[u.ID] = i
		rt, err := e.h.Pools.Route(u.KSID)
		if err != nil {
			t.Fatal(err)
		}
		attrs := []byte("{}")
		if len(f.Declared) > 0 {
			attrs, _ = json.Marshal(f.Declared)
		}
		if _, err := rt.Pool.Exec(ctx, `INSERT INTO core.profiles (ksid, user_id, headline, bio, skills, hourly_rate, country, available, attributes)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, u.KSID.Bytes(), u.ID.Bytes(), f.Headline, f.Bio, f.Skills, f.HourlyRate, f.Country, f.Available, attrs); err != nil {
			t.Fatal(err)
		}
		// The reviews the market observed (their quality shows only through them), bound to contracts.
		for r := range f.Reviews {
			rating := int(math.Round(f.AvgRating))
			if r%2 == 1 && f.AvgRating > float64(rating) {
				rating++
			}
			id, _ := e.h.IDs.New(shardkey.KindReview, u.KSID)
			if _, err := rt.Pool.Exec(ctx, `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, contract_id, status, rating)
				VALUES ($1, $2, $3, $4, $5, $6, 'verified', $7)`, u.KSID.Bytes(), id.Bytes(), rid(shardkey.KindUser), u.ID.Bytes(),
				rid(shardkey.KindJob), rid(shardkey.KindContract), max(1, min(5, rating))); err != nil {
				t.Fatal(err)
			}
		}
	}
	type posted struct {
		owner apitest.User
		id    string
	}
	var posts []posted
	for _, j := range m.Jobs {
		owner := e.h.CreateUser(t, authn.Client, j.Region)
		body := map[string]any{"title": j.Title, "description": j.Description, "skills": j.Skills, "currency": "USD", "remote": j.Remote}
		if j.BudgetMax > 0 {
			body["budget_min"], body["budget_max"] = math.Round(j.BudgetMin), math.Round(j.BudgetMax)
		}
		if !j.Remote {
			body["country"] = j.Country // an on-site job: its list keeps to that country
		}
		r := e.h.Do(t, j.Region, apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: owner.Token, Body: body})
		if r.Status != http.StatusCreated {
			t.Fatalf("job: %d %s", r.Status, r.Body)
		}
		var job struct{ ID string }
		_ = json.Unmarshal(r.Body, &job)
		posts = append(posts, posted{owner, job.ID})
	}
	e.settle(t)
	var engine, jaccard float64
	n := 0
	for i, p := range posts {
		st, page := e.get(t, m.Jobs[i].Region, "/api/v1/jobs/matching?limit=10&job_id="+p.id, p.owner)
		if st != http.StatusOK {
			t.Fatalf("matching: %d", st)
		}
		if _, ok := page.Fairness.Groups["gender"]; ok || page.Fairness.Groups["country"] == nil {
			t.Fatalf("a client's list must report public groups only: %+v", page.Fairness.Groups)
		}
		var ranked []int
		for _, it := range page.Items {
			ranked = append(ranked, byID[*it.FreelancerID])
		}
		a, b := ndcg(m, i, ranked, 10), ndcg(m, i, synth.BaselineJaccard(m, i), 10)
		if math.IsNaN(a) || math.IsNaN(b) {
			continue
		}
		engine, jaccard, n = engine+a, jaccard+b, n+1
	}
	// The recorded lists keep the declared groups, for the compliance report.
	declared := 0
	for _, tgt := range e.h.Pools.Targets("") {
		var c int
		if err := tgt.Pool.QueryRow(ctx, `SELECT count(*) FROM ai.match_lists WHERE fairness->'groups' ? 'gender'`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		declared += c
	}
	if declared == 0 {
		t.Fatal("no recorded list keeps the declared groups")
	}
	engine, jaccard = engine/float64(n), jaccard/float64(n)
	t.Logf("NDCG@10 over %d jobs: engine %.4f, Jaccard baseline %.4f", n, engine, jaccard)
	if n < 15 || engine < jaccard+0.03 {
		t.Fatalf("engine NDCG@10 %.4f is not well above the Jaccard baseline %.4f (%d jobs)", engine, jaccard, n)
	}
}

// A cached list is served until a profile changes: the change's recomputation makes a new index
// generation, and the next list is computed afresh and shows the change.
func TestCacheInvalidatedByAChange(t *testing.T) {
	e := start(t, nil)
	client := e.h.CreateUser(t, authn.Client, "eu-west")
	var free []apitest.User
	for i, skills := range [][]string{{"go", "postgresql"}, {"go"}, {"react"}} {
		u := e.h.CreateUser(t, authn.Freelancer, "eu-west")
		r := e.h.Do(t, "eu-west", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: u.Token,
			Body: map[string]any{"headline": fmt.Sprintf("Engineer %d", i), "bio": "Databases and services.", "skills": skills, "available": true}})
		if r.Status != http.StatusOK {
			t.Fatalf("profile: %d %s", r.Status, r.Body)
		}
		free = append(free, u)
	}
	r := e.h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: client.Token,
		Body: map[string]any{"title": "Go and PostgreSQL", "description": "Services on PostgreSQL.", "skills": []string{"go", "postgresql"}}})
	var job struct{ ID string }
	_ = json.Unmarshal(r.Body, &job)
	e.settle(t)
	s := e.svc["eu-west"]
	hits := func() float64 { return testutil.ToFloat64(s.metrics.cache.WithLabelValues("hit")) }
	path := "/api/v1/jobs/matching?job_id=" + job.ID
	_, first := e.get(t, "eu-west", path, client)
	before := hits()
	_, second := e.get(t, "eu-west", path, client)
	if hits() != before+1 || len(first.Items) != 3 || first.ListID == second.ListID {
		t.Fatalf("second list: hit %v → %v, %d items, list IDs %s %s", before, hits(), len(first.Items), first.ListID, second.ListID)
	}
	// The third freelancer becomes unavailable: they leave the list.
	r = e.h.Do(t, "eu-west", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: free[2].Token,
		Body: map[string]any{"headline": "Engineer 2", "bio": "Databases and services.", "skills": []string{"react"}, "available": false}})
	if r.Status != http.StatusOK {
		t.Fatal(r.Status)
	}
	if n := e.obs["eu-west"].Pass(context.Background()); n < 1 {
		t.Fatalf("%d outbox messages delivered, want the recomputation", n)
	}
	if err := s.refresh(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	before = hits()
	_, third := e.get(t, "eu-west", path, client)
	if hits() != before || len(third.Items) != 2 {
		t.Fatalf("after the change: hit %v → %v, items %v", before, hits(), third.Items)
	}
	// With Redis down the engine still answers, without a cache.
	live := s.cache
	s.cache = newCache(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond}), time.Minute, s.log)
	defer func() { s.cache = live }()
	sub, err := s.jobSubject(context.Background(), authn.Principal{UserID: client.ID, KSID: client.KSID, Role: authn.Client}, mustID(t, job.ID))
	if err != nil {
		t.Fatal(err)
	}
	sub.Limit = 10
	page, _, _, err := s.answer(context.Background(), sub, "region")
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("with Redis down: %v, %d items", err, len(page.Items))
	}
}

func mustID(t *testing.T, s string) shardkey.ID {
	t.Helper()
	id, err := shardkey.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// With the re-ranking on, a list drawn from a pool where one country's freelancers score lower still
// gives that country its share of the top of the list, and says what that cost.
func TestRerankRestoresThePoolsProportions(t *testing.T) {
	e := start(t, func(c *Config) { c.Rerank = true })
	client := e.h.CreateUser(t, authn.Client, "us-east")
	ctx := context.Background()
	for i := range 20 {
		u := e.h.CreateUser(t, authn.Freelancer, "us-east")
		country, skills := "US", []string{"go", "postgresql", "kubernetes"}
		if i%2 == 1 {
			country, skills = "CA", []string{"go"} // fewer of the job's skills: lower scores
		}
		rt, _ := e.h.Pools.Route(u.KSID)
		if _, err := rt.Pool.Exec(ctx, `INSERT INTO core.profiles (ksid, user_id, headline, bio, skills, country, available)
			VALUES ($1, $2, 'Go engineer', 'Services', $3, $4, true)`, u.KSID.Bytes(), u.ID.Bytes(), skills, country); err != nil {
			t.Fatal(err)
		}
	}
	r := e.h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: client.Token,
		Body: map[string]any{"title": "Go on Kubernetes", "description": "PostgreSQL services on Kubernetes.", "skills": []string{"go", "postgresql", "kubernetes"}}})
	var job struct{ ID string }
	_ = json.Unmarshal(r.Body, &job)
	e.settle(t)
	st, page := e.get(t, "us-east", "/api/v1/jobs/matching?limit=10&job_id="+job.ID, client)
	if st != http.StatusOK || !page.Fairness.Reranked || len(page.Fairness.Flagged) != 0 {
		t.Fatalf("re-ranked list: %d %+v", st, page.Fairness)
	}
	if ir := page.Fairness.ImpactRatio["country"]["CA"]; ir < 0.8 || page.Fairness.RelevanceCost <= 0 {
		t.Fatalf("impact ratio of CA %.2f, relevance cost %.4f", ir, page.Fairness.RelevanceCost)
	}
	// The same list without the re-ranking flags the country.
	s := e.svc["us-east"]
	s.cfg.Rerank = false
	defer func() { s.cfg.Rerank = true }()
	sub, err := s.jobSubject(ctx, authn.Principal{UserID: client.ID, KSID: client.KSID, Role: authn.Client}, mustID(t, job.ID))
	if err != nil {
		t.Fatal(err)
	}
	sub.Limit, sub.Model = 10, -1 // another cache key
	unranked, _, _, err := s.answer(ctx, sub, "region")
	if err != nil || !slices.Contains(unranked.Fairness.Flagged, "country=CA") {
		t.Fatalf("without the re-ranking: %v %+v", err, unranked.Fairness)
	}
	t.Logf("impact ratio of CA: %.2f without, %.2f with the re-ranking (relevance cost %.4f)",
		unranked.Fairness.ImpactRatio["country"]["CA"], page.Fairness.ImpactRatio["country"]["CA"], page.Fairness.RelevanceCost)
}

// The index's recall on real embeddings: the local embedder's vectors of a generated market's profiles
// (text, not synthetic clusters), queried with its jobs' vectors, against an exact scan.
func TestIndexRecallOnEmbeddedText(t *testing.T) {
	opts := synth.DefaultOptions()
	opts.Freelancers, opts.Jobs = 3000, 200
	m := synth.Generate(5, opts)
	emb := embed.NewLocal(384)
	ctx := context.Background()
	docs := make([]embed.Doc, len(m.Freelancers))
	for i, f := range m.Freelancers {
		docs[i] = embed.Doc{Title: f.Headline, Body: f.Bio, Skills: f.Skills}
	}
	vecs, err := emb.EmbedDocs(ctx, docs)
	if err != nil {
		t.Fatal(err)
	}
	items := make([]index.Item, len(vecs))
	gen := shardkey.NewGenerator(nil, nil)
	for i, v := range vecs {
		id, _ := gen.New(shardkey.KindUser, shardkey.KeyspaceID(i+1))
		items[i] = index.Item{ID: id, Vec: v}
	}
	ix, err := index.BuildWithOptions(384, items, index.BuildOptions{KeepFloat: true})
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, j := range m.Jobs {
		q, err := emb.EmbedDocs(ctx, []embed.Doc{{Title: j.Title, Body: j.Description, Skills: j.Skills}})
		if err != nil {
			t.Fatal(err)
		}
		got := ix.Search(q[0], 10, index.SearchOptions{Candidates: DefaultConfig().Candidates})
		total += index.Recall(got, ix.Exact(q[0], 10, nil), 10)
	}
	recall := total / float64(len(m.Jobs))
	t.Logf("recall@10 of the index on %d embedded profiles, %d job queries: %.4f", len(items), len(m.Jobs), recall)
	if recall < 0.97 {
		t.Fatalf("recall@10 %.4f on embedded text, want at least 0.97", recall)
	}
}

// Switching embedding spaces (a new model, or new dimensions) re-embeds everything in the background;
// the vectors of the old space stay apart and are never compared with the new ones.
func TestSwitchingSpacesReembeds(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	client := e.h.CreateUser(t, authn.Client, "ap-south")
	u := e.h.CreateUser(t, authn.Freelancer, "ap-south")
	r := e.h.Do(t, "ap-south", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: u.Token,
		Body: map[string]any{"headline": "Go engineer", "bio": "Services", "skills": []string{"go"}, "available": true}})
	if r.Status != http.StatusOK {
		t.Fatal(r.Status)
	}
	r = e.h.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: client.Token,
		Body: map[string]any{"title": "Go services", "skills": []string{"go"}}})
	var job struct{ ID string }
	_ = json.Unmarshal(r.Body, &job)
	e.settle(t)
	old := e.svc["ap-south"]
	next, err := New(old.a, old.cfg, outboxFor(t, old), embed.NewLocal(128))
	if err != nil {
		t.Fatal(err)
	}
	next.backfillOnce(ctx)
	if err := next.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	rt, _ := e.h.Pools.Route(u.KSID)
	var spaces []string
	rows, err := rt.Pool.Query(ctx, `SELECT model FROM ai.embeddings WHERE ksid = $1 AND entity_id = $2 ORDER BY model`, u.KSID.Bytes(), u.ID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		spaces = append(spaces, s)
	}
	rows.Close()
	if len(spaces) != 2 || next.profiles.load().ix.Len() != 1 || next.profiles.load().ix.Dims() != 128 {
		t.Fatalf("spaces %v, new index %d × %d", spaces, next.profiles.load().ix.Len(), next.profiles.load().ix.Dims())
	}
	sub, err := next.jobSubject(ctx, authn.Principal{UserID: client.ID, KSID: client.KSID, Role: authn.Client}, mustID(t, job.ID))
	if err != nil || len(sub.Vector) != 128 {
		t.Fatalf("the job's vector in the new space: %v, %d dims", err, len(sub.Vector))
	}
	sub.Limit = 5
	page, _, _, err := next.answer(ctx, sub, "region")
	if err != nil || len(page.Items) != 1 || *page.Items[0].FreelancerID != u.ID {
		t.Fatalf("a list in the new space: %v %+v", err, page.Items)
	}
}

// outboxFor is another outbox on s's node, for a second engine in a test (each engine registers its
// kind once per outbox).
func outboxFor(t *testing.T, s *Service) *outbox.Outbox {
	t.Helper()
	ob, err := outbox.New(s.a, outbox.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// The shadow check measures the index's recall on live queries.
func TestShadowRecall(t *testing.T) {
	e := start(t, func(c *Config) { c.ShadowRate = 1 })
	client := e.h.CreateUser(t, authn.Client, "us-east")
	for i := range 12 {
		u := e.h.CreateUser(t, authn.Freelancer, "us-east")
		r := e.h.Do(t, "us-east", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: u.Token,
			Body: map[string]any{"headline": fmt.Sprintf("Engineer %d", i), "bio": "Go and SQL", "skills": []string{"go", "sql"}, "available": true}})
		if r.Status != http.StatusOK {
			t.Fatal(r.Status)
		}
	}
	r := e.h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: client.Token,
		Body: map[string]any{"title": "Go and SQL", "skills": []string{"go", "sql"}}})
	var job struct{ ID string }
	_ = json.Unmarshal(r.Body, &job)
	e.settle(t)
	s := e.svc["us-east"]
	if st, _ := e.get(t, "us-east", "/api/v1/jobs/matching?job_id="+job.ID, client); st != http.StatusOK {
		t.Fatal(st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(s.metrics.recall) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the shadow check set no recall")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(s.metrics.recall); got != 1 {
		t.Fatalf("recall@10 on 12 profiles: %v, want 1", got)
	}
}

// The generator's injected bias against one group (fewer opens and hires for women, whatever their
// hidden utility) is what the detector sees: the impact ratio of hires over the lists shown flags the
// group in the biased market and not in the fair one.
func TestDetectorSeesAnInjectedBias(t *testing.T) {
	hires := func(bias synth.Bias) (map[string]float64, []string) {
		opts := synth.DefaultOptions()
		opts.Bias = bias
		m := synth.Generate(8, opts)
		imps := synth.Simulate(m, m.Ranker(score.Default().Vector()), synth.DefaultSimOptions())
		selected, pool := map[string]int{}, map[string]int{}
		for _, imp := range imps {
			for _, s := range imp.Items {
				g := m.Freelancers[s.Freelancer].Groups()["gender"]
				if g != "man" && g != "woman" {
					continue // women against men (the other declared groups are small)
				}
				pool[g]++
				if s.Hired {
					selected[g]++
				}
			}
		}
		return fairness.ImpactRatio(selected, pool)
	}
	fairRatios, fairFlags := hires(synth.Bias{})
	biasedRatios, biasedFlags := hires(synth.Bias{Attr: "gender", Value: "woman", Strength: 0.5})
	t.Logf("impact ratio of hires, women against men: %.2f without the bias, %.2f with it (flagged %v)", fairRatios["woman"], biasedRatios["woman"], biasedFlags)
	if len(fairFlags) != 0 || !slices.Equal(biasedFlags, []string{"woman"}) {
		t.Fatalf("flags without the bias %v, with it %v", fairFlags, biasedFlags)
	}
}
