package matching

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/matching/embed"
	"github.com/8thdegree/meridian/api/internal/matching/fairness"
	"github.com/8thdegree/meridian/api/internal/matching/index"
	"github.com/8thdegree/meridian/api/internal/matching/score"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Limits of a matching list.
const (
	DefaultLimit = 10
	MaxLimit     = 50
)

// Directions of a list.
const (
	dirFreelancers = "freelancers"
	dirJobs        = "jobs"
)

// Ranked is one item of a list as a region ranked it: what the client sees, plus what the fairness
// report and the learning loop need (the signals and the groups), which a region's answer to a global
// query carries too.
type Ranked struct {
	ID      shardkey.ID       `json:"id"`
	Region  string            `json:"region"`
	Score   float64           `json:"score"`
	Reasons []score.Reason    `json:"reasons"`
	Signals []float64         `json:"signals"`
	Groups  map[string]string `json:"groups"`
}

// Item is one entry of the public list.
type Item struct {
	FreelancerID *shardkey.ID   `json:"freelancer_id,omitempty"`
	JobID        *shardkey.ID   `json:"job_id,omitempty"`
	Score        float64        `json:"score"`
	Reasons      []score.Reason `json:"reasons"`
	Region       string         `json:"region"`
}

// ModelRef names the model that ranked a list.
type ModelRef struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
}

// Page is the answer of GET /jobs/matching.
type Page struct {
	ListID       string          `json:"list_id"`
	Items        []Item          `json:"items"`
	Fairness     fairness.Report `json:"fairness"`
	Model        ModelRef        `json:"model"`
	Partial      bool            `json:"partial"`
	FailedShards []string        `json:"failed_shards"`
}

// regionAnswer is one region's part of a list: its best items and its eligible pool per group.
type regionAnswer struct {
	Items []Ranked       `json:"items"`
	Pool  map[string]int `json:"pool"`
}

// subject is what a list is made for: a job (direction freelancers) or a freelancer (direction jobs).
type subject struct {
	Direction string      `json:"direction"`
	ID        shardkey.ID `json:"id"`
	Vector    []float32   `json:"vector"`
	Space     string      `json:"space"`
	Skills    []string    `json:"skills"`
	// The job's budget (direction freelancers) or the freelancer's rate (direction jobs), in cents.
	BudgetMin *int64 `json:"budget_min,omitempty"`
	BudgetMax *int64 `json:"budget_max,omitempty"`
	Rate      *int64 `json:"rate,omitempty"`
	Currency  string `json:"currency,omitempty"`
	Remote    bool   `json:"remote"`
	Country   string `json:"country,omitempty"`
	Limit     int    `json:"limit"`
	// Depth is how many items each region ranks (more than Limit when the list is re-ranked).
	Depth int `json:"depth,omitempty"`
	Model int `json:"model"`
}

func (s *Service) match(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	q := r.URL.Query()
	limit := DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return apierror.Invalid(map[string]string{"limit": fmt.Sprintf("must be an integer from 1 to %d", MaxLimit)})
		}
		limit = n
	}
	scope := q.Get("scope")
	switch scope {
	case "":
		scope = "region"
	case "region", "global":
	default:
		return apierror.Invalid(map[string]string{"scope": "must be region or global"})
	}
	var (
		sub subject
		err error
	)
	if v := q.Get("job_id"); v != "" {
		id, perr := shardkey.ParseIDOfKind(v, shardkey.KindJob)
		if perr != nil {
			return apierror.Invalid(map[string]string{"job_id": "is not a job ID"}).WithCause(perr)
		}
		sub, err = s.jobSubject(ctx, caller, id)
	} else {
		if caller.Role != authn.Freelancer {
			return apierror.Invalid(map[string]string{"job_id": "is required (only a freelancer may omit it, to get jobs for themselves)"})
		}
		sub, err = s.freelancerSubject(ctx, caller)
	}
	if err != nil {
		return err
	}
	sub.Limit = limit
	m := s.model.Load()
	sub.Model = m.Version
	page, ranked, pool, err := s.answer(ctx, sub, scope)
	if err != nil {
		return err
	}
	page.Model = ModelRef{ID: s.modelID(m), Version: m.Version}
	listID, err := s.record(ctx, caller, sub, scope, m.Version, ranked, page.Fairness, pool)
	if err != nil {
		return err
	}
	page.ListID = listID
	// The list as recorded keeps every group for the compliance report; the client sees only the public
	// groups (country and region, which profiles show anyway): a declared attribute of someone on a
	// short list would otherwise be as good as named.
	page.Fairness = publicReport(page.Fairness)
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

// publicGroups are the group attributes a client may see in a list's fairness report.
var publicGroups = map[string]bool{"country": true, "region": true}

// publicReport is r without the groups of self-declared attributes.
func publicReport(r fairness.Report) fairness.Report {
	keep := func(m map[string]map[string]float64) map[string]map[string]float64 {
		out := map[string]map[string]float64{}
		for a, v := range m {
			if publicGroups[a] {
				out[a] = v
			}
		}
		return out
	}
	groups := map[string]map[string]int{}
	for a, v := range r.Groups {
		if publicGroups[a] {
			groups[a] = v
		}
	}
	flagged := []string{}
	for _, k := range r.Flagged {
		if a, _, ok := fairness.SplitKey(k); ok && publicGroups[a] {
			flagged = append(flagged, k)
		}
	}
	r.Groups, r.Exposure, r.ImpactRatio, r.Skew, r.Flagged = groups, keep(r.Exposure), keep(r.ImpactRatio), keep(r.Skew), flagged
	return r
}

// publicAnswer is a region's answer as it may leave the region: no self-declared attributes, of the
// items or of the pool.
func publicAnswer(a regionAnswer) regionAnswer {
	out := regionAnswer{Items: make([]Ranked, len(a.Items)), Pool: map[string]int{}}
	for i, it := range a.Items {
		g := map[string]string{}
		for k, v := range it.Groups {
			if publicGroups[k] {
				g[k] = v
			}
		}
		it.Groups = g
		out.Items[i] = it
	}
	for k, n := range a.Pool {
		if attr, _, ok := fairness.SplitKey(k); ok && publicGroups[attr] {
			out.Pool[k] = n
		}
	}
	return out
}

// answer ranks the list of sub in scope, from the cache when it can.
func (s *Service) answer(ctx context.Context, sub subject, scope string) (Page, []Ranked, map[string]int, error) {
	key := ""
	if scope == "region" {
		key = fmt.Sprintf("matching:v1:%s:%s:%s:%s:%d:%d:%d:%d", s.a.Region, s.epoch, sub.Direction, sub.ID, sub.Limit, sub.Model,
			s.profiles.load().gen, s.jobs.load().gen)
		if c, ok := s.cache.get(ctx, key); ok {
			s.metrics.cache.WithLabelValues("hit").Inc()
			s.countList(sub, scope, c.Page.Fairness)
			return c.Page, c.Ranked, c.Pool, nil
		}
		s.metrics.cache.WithLabelValues("miss").Inc()
	}
	var (
		parts  []regionAnswer
		failed []string
	)
	rerank := s.cfg.Rerank && sub.Direction == dirFreelancers
	sub.Depth = depth(sub, rerank)
	local, err := s.rankLocal(ctx, sub)
	if err != nil {
		return Page{}, nil, nil, err
	}
	parts = append(parts, local)
	if scope == "global" {
		more, bad := s.rankElsewhere(ctx, sub)
		parts, failed = append(parts, more...), bad
	}
	ranked, pool := merge(parts, sub.Depth)
	page := Page{Items: make([]Item, 0, len(ranked)), Partial: len(failed) > 0, FailedShards: failed}
	if page.FailedShards == nil {
		page.FailedShards = []string{}
	}
	entries := make([]fairness.Entry, len(ranked))
	for i, it := range ranked {
		entries[i] = fairness.Entry{ID: it.ID.String(), Groups: it.Groups, Relevance: it.Score}
	}
	attrs := groupAttrs(pool)
	report := fairness.Evaluate(entries, pool, attrs, sub.Limit)
	if rerank {
		out, cost := fairness.Rerank(entries, rerankAttr, fairness.PoolFor(pool, rerankAttr), sub.Limit)
		byID := map[string]Ranked{}
		for _, it := range ranked {
			byID[it.ID.String()] = it
		}
		reordered := make([]Ranked, 0, len(out))
		for _, e := range out {
			reordered = append(reordered, byID[e.ID])
		}
		ranked = reordered
		report = fairness.Evaluate(out, pool, attrs, sub.Limit)
		report.Reranked, report.RelevanceCost = true, cost
	}
	if len(ranked) > sub.Limit {
		ranked = ranked[:sub.Limit]
	}
	for _, it := range ranked {
		id := it.ID
		item := Item{Score: it.Score, Reasons: it.Reasons, Region: it.Region}
		if sub.Direction == dirFreelancers {
			item.FreelancerID = &id
		} else {
			item.JobID = &id
		}
		page.Items = append(page.Items, item)
	}
	page.Fairness = report
	s.countList(sub, scope, report)
	if key != "" {
		s.cache.put(ctx, key, cached{Page: page, Ranked: ranked, Pool: pool})
	}
	return page, ranked, pool, nil
}

// countList counts a list served, and whether it was flagged.
func (s *Service) countList(sub subject, scope string, report fairness.Report) {
	if len(report.Flagged) > 0 {
		s.metrics.flagged.WithLabelValues(sub.Direction).Inc()
	}
	s.metrics.lists.WithLabelValues(sub.Direction, scope).Inc()
}

// rerankDepth is how many times the list's length the re-ranking chooses from: it can only bring up
// people who are on the longer list.
const rerankDepth = 4

// depth is how many items the regions rank for sub: the list's length, or more to re-rank from.
// Another region's node ranks as deep as the asking node says (sub.Depth).
func depth(sub subject, rerank bool) int {
	if sub.Depth > 0 {
		return sub.Depth
	}
	if rerank {
		return sub.Limit * rerankDepth
	}
	return sub.Limit
}

// rerankAttr is the attribute the optional re-ranking restores the pool's proportions of.
const rerankAttr = "country"

// groupAttrs are the attributes of the pool, sorted.
func groupAttrs(pool map[string]int) []string {
	seen := map[string]bool{}
	for k := range pool {
		if a, _, ok := fairness.SplitKey(k); ok {
			seen[a] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// merge keeps the best limit items of the regions' answers and sums their pools.
func merge(parts []regionAnswer, limit int) ([]Ranked, map[string]int) {
	var all []Ranked
	pool := map[string]int{}
	for _, p := range parts {
		all = append(all, p.Items...)
		for k, n := range p.Pool {
			pool[k] += n
		}
	}
	slices.SortFunc(all, func(a, b Ranked) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	if len(all) > limit {
		all = all[:limit]
	}
	return all, pool
}

// rankLocal ranks this region's candidates for sub: the index's nearest eligible vectors, the hard
// filters, then the full score.
func (s *Service) rankLocal(ctx context.Context, sub subject) (regionAnswer, error) {
	c := s.profiles
	if sub.Direction == dirJobs {
		c = s.jobs
	}
	snap := c.load()
	if len(sub.Vector) == 0 {
		return regionAnswer{Items: []Ranked{}, Pool: map[string]int{}}, nil
	}
	if len(sub.Vector) != c.dims {
		return regionAnswer{}, apierror.Unavailable("the subject's vector is of another embedding space; it is being recomputed", 5*time.Second)
	}
	hits := snap.ix.Search(sub.Vector, s.cfg.Candidates, index.SearchOptions{Candidates: s.cfg.Candidates, Allow: snap.eligible})
	if s.cfg.ShadowRate > 0 && rand.Float64() < s.cfg.ShadowRate {
		go s.shadow(snap, sub.Vector, hits)
	}
	w := s.model.Load().Weights
	out := make([]Ranked, 0, len(hits))
	for _, h := range hits {
		f := snap.facts[h.ID]
		if f == nil || !f.Eligible || h.ID == sub.ID {
			continue
		}
		sig, ok := s.signals(sub, f, h.Score, snap)
		if !ok {
			continue
		}
		total, reasons := score.Score(sig, w)
		out = append(out, Ranked{ID: h.ID, Region: s.a.Region, Score: total, Reasons: reasons, Signals: sig.Vector(), Groups: f.groups()})
	}
	slices.SortFunc(out, func(a, b Ranked) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	if n := depth(sub, s.cfg.Rerank && sub.Direction == dirFreelancers); len(out) > n {
		out = out[:n]
	}
	pool := snap.pool
	if sub.Direction == dirJobs {
		pool = map[string]int{} // jobs carry no groups
	}
	return regionAnswer{Items: out, Pool: pool}, nil
}

// shadow compares the index's nearest neighbours with an exact scan of the same snapshot and records
// the recall (a gauge): the index is approximate, and this says how much.
func (s *Service) shadow(snap *snapshot, q []float32, got []index.Hit) {
	const k = 10
	want := snap.ix.Exact(q, k, snap.eligible)
	if len(want) == 0 {
		return
	}
	s.metrics.recall.Set(index.Recall(got, want, k))
}

// jobSubject reads the caller's job and its vector: the list of freelancers for it.
func (s *Service) jobSubject(ctx context.Context, caller authn.Principal, id shardkey.ID) (subject, error) {
	shard, err := s.a.ReadShard(ctx, id.KeyspaceID())
	if err != nil {
		return subject{}, err
	}
	job, err := jobs.Read(ctx, shard.Pool, shard.Route.KeyspaceID, id)
	if errors.Is(err, jobs.ErrNoJob) || (err == nil && job.OwnerID != caller.UserID) {
		return subject{}, apierror.NotFound("job")
	}
	if err != nil {
		return subject{}, err
	}
	sub := subject{Direction: dirFreelancers, ID: id, Skills: job.Skills, Currency: job.Currency, Remote: job.Remote, Space: s.emb.Space().ID()}
	if job.Country != nil {
		sub.Country = *job.Country
	}
	if job.BudgetMin != nil {
		v := int64(*job.BudgetMin)
		sub.BudgetMin = &v
	}
	if job.BudgetMax != nil {
		v := int64(*job.BudgetMax)
		sub.BudgetMax = &v
	}
	sub.Vector, err = s.vectorOf(ctx, shard.Pool, shard.Route.KeyspaceID, id, embed.Doc{Title: job.Title, Body: job.Description, Skills: job.Skills})
	return sub, err
}

// freelancerSubject reads the caller's profile and its vector: the list of jobs for them.
func (s *Service) freelancerSubject(ctx context.Context, caller authn.Principal) (subject, error) {
	shard, err := s.a.ReadShard(ctx, caller.KSID)
	if err != nil {
		return subject{}, err
	}
	var (
		doc     embed.Doc
		rate    *int64
		country string
	)
	err = shard.Pool.QueryRow(ctx, ownProfileSQL, shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes()).Scan(&doc.Title, &doc.Body, &doc.Skills, &rate, &country)
	if errors.Is(err, pgx.ErrNoRows) {
		return subject{}, apierror.Conflict("no_profile", "write your profile first (PUT /api/v1/users/profile): jobs are matched to it")
	}
	if err != nil {
		return subject{}, err
	}
	sub := subject{Direction: dirJobs, ID: caller.UserID, Skills: doc.Skills, Rate: rate, Country: country, Space: s.emb.Space().ID()}
	sub.Vector, err = s.vectorOf(ctx, shard.Pool, shard.Route.KeyspaceID, caller.UserID, doc)
	return sub, err
}

// vectorOf returns the stored vector of an entity in the current space, or embeds doc now when there
// is none yet (the entity changed a moment ago, or the space was just switched).
func (s *Service) vectorOf(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, owner shardkey.KeyspaceID, id shardkey.ID, doc embed.Doc) ([]float32, error) {
	var vec []float32
	err := q.QueryRow(ctx, vectorSQL, owner.Bytes(), id.Bytes(), s.emb.Space().ID()).Scan(&vec)
	if err == nil && len(vec) == s.emb.Space().Dims {
		return vec, nil
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	vecs, err := s.emb.EmbedDocs(ctx, []embed.Doc{doc})
	if errors.Is(err, embed.ErrEmptyText) {
		return nil, nil // an empty profile: nothing to match on, an empty list
	}
	if err != nil {
		return nil, apierror.Unavailable("the embedding service is unavailable", 10*time.Second).WithCause(err)
	}
	return vecs[0], nil
}

// record stores the list as shown, on the requester's shard, and returns its ID.
func (s *Service) record(ctx context.Context, caller authn.Principal, sub subject, scope string, model int, ranked []Ranked,
	report fairness.Report, pool map[string]int) (string, error) {
	type shown struct {
		ID       shardkey.ID       `json:"id"`
		Position int               `json:"position"`
		Score    float64           `json:"score"`
		Signals  []float64         `json:"signals"`
		Groups   map[string]string `json:"groups"`
		Region   string            `json:"region"`
	}
	items := make([]shown, len(ranked))
	for i, it := range ranked {
		items[i] = shown{ID: it.ID, Position: i + 1, Score: it.Score, Signals: it.Signals, Groups: it.Groups, Region: it.Region}
	}
	rawItems, err := json.Marshal(items)
	if err != nil {
		return "", err
	}
	rawFair, err := json.Marshal(struct {
		fairness.Report
		Pool map[string]int `json:"pool"`
	}{report, pool})
	if err != nil {
		return "", err
	}
	shard, err := s.a.WriteShard(ctx, caller.KSID)
	if err != nil {
		return "", err
	}
	var id string
	err = shard.Pool.QueryRow(ctx, insertListSQL, shard.Route.KeyspaceID.Bytes(), s.a.Region, sub.Direction, sub.ID.Bytes(), scope, model,
		rawItems, rawFair, len(report.Flagged) > 0, report.Reranked).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("matching: recording the list: %w", err)
	}
	return id, nil
}
