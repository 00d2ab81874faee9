package matching

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bits-and-blooms/bitset"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/matching/fairness"
	"github.com/8thdegree/meridian/api/internal/matching/index"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// facts are what the hard filters, the signals and the fairness groups read of an entity.
type facts struct {
	ID shardkey.ID
	// Eligible: an available freelancer with a live account, or an open job.
	Eligible bool
	Skills   []string
	// Country: a freelancer's, or where an on-site job is done ("" unknown).
	Country string
	// Freelancers.
	Rate       *int64 // cents per hour
	Region     string
	Attributes map[string]string
	// Jobs.
	BudgetMin, BudgetMax *int64
	Currency             string
	Remote               bool
	Owner                shardkey.ID
	// updated is the vector row's updated_at as last read.
	updated time.Time
}

// groups are the entity's fairness groups: country, region and its self-declared attributes.
func (f *facts) groups() map[string]string {
	g := map[string]string{}
	if !f.Owner.IsZero() {
		return g // a job: jobs carry no groups
	}
	if f.Country != "" {
		g["country"] = f.Country
	}
	if f.Region != "" {
		g["region"] = f.Region
	}
	for k, v := range f.Attributes {
		g[k] = v
	}
	return g
}

// snapshot is one immutable state of a corpus: queries load it once and take no lock.
type snapshot struct {
	ix       *index.Index
	facts    map[shardkey.ID]*facts
	eligible *bitset.BitSet
	// gen changes with every new snapshot: cached answers name the generations they were made from.
	gen uint64
	// idf weighs each skill by its rarity among the eligible entities (skill coverage counts rare skills more).
	idf map[string]float64
	// pool counts the eligible entities per group, keyed by fairness.Key (the fairness report's pool).
	pool map[string]int
}

// corpus is one kind of vectors of the region (profiles or jobs) in the current space.
type corpus struct {
	kind string
	dims int
	snap atomic.Pointer[snapshot]
	gen  atomic.Uint64

	// applyMu serialises the making of snapshots (the loader's refresh and the removals it is told of).
	applyMu sync.Mutex
	// mu guards watermarks: per shard, the newest change already in a stored snapshot.
	mu         sync.Mutex
	watermarks map[string]time.Time
}

func newCorpus(kind string, dims int) *corpus {
	c := &corpus{kind: kind, dims: dims, watermarks: map[string]time.Time{}}
	ix, _ := index.Build(dims, nil)
	c.snap.Store(&snapshot{ix: ix, facts: map[shardkey.ID]*facts{}, eligible: bitset.New(0), idf: map[string]float64{},
		pool: map[string]int{}})
	return c
}

func (c *corpus) load() *snapshot { return c.snap.Load() }

// apply makes the next snapshot from the current one, the changed entities and the gone ones.
func (c *corpus) apply(changed []index.Item, changedFacts []*facts, gone []shardkey.ID) error {
	if len(changed) == 0 && len(gone) == 0 {
		return nil
	}
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	cur := c.load()
	ix, err := cur.ix.With(changed, gone)
	if err != nil {
		return fmt.Errorf("matching: %s index: %w", c.kind, err)
	}
	fs := make(map[shardkey.ID]*facts, len(cur.facts)+len(changedFacts))
	for id, f := range cur.facts {
		fs[id] = f
	}
	for _, id := range gone {
		delete(fs, id)
	}
	for _, f := range changedFacts {
		fs[f.ID] = f
	}
	next := &snapshot{ix: ix, facts: fs, eligible: bitset.New(uint(ix.Slots())), gen: c.gen.Add(1),
		idf: map[string]float64{}}
	n := 0
	df := map[string]int{}
	var entries []fairness.Entry
	attrs := map[string]bool{}
	for id, f := range fs {
		pos, ok := ix.Pos(id)
		if !ok || !f.Eligible {
			continue
		}
		next.eligible.Set(uint(pos))
		n++
		for _, s := range f.Skills {
			df[skills.Fold(s)]++
		}
		g := f.groups()
		for attr := range g {
			attrs[attr] = true
		}
		entries = append(entries, fairness.Entry{ID: id.String(), Groups: g})
	}
	next.pool = fairness.Pool(entries, slices.Sorted(maps.Keys(attrs)))
	for s, d := range df {
		next.idf[s] = 1 + math.Log(float64(1+n)/float64(1+d))
	}
	c.snap.Store(next)
	return nil
}

// loadShard reads the shard's vectors of the corpus changed after its watermark, with their facts, and
// the watermark to record once they are in a stored snapshot (advance).
func (c *corpus) loadShard(ctx context.Context, t shardpool.Target, b shardpool.Bounds, space string) ([]index.Item, []*facts, time.Time, error) {
	c.mu.Lock()
	wm := c.watermarks[t.Shard]
	c.mu.Unlock()
	q := loadProfilesSQL
	if c.kind == kindJob {
		q = loadJobsSQL
	}
	rows, err := t.Pool.Query(ctx, q, space, wm, b.Lo, b.Hi)
	if err != nil {
		return nil, nil, wm, err
	}
	defer rows.Close()
	snap := c.load()
	var (
		items []index.Item
		fs    []*facts
		last  = wm
	)
	for rows.Next() {
		var (
			id      []byte
			vec     []float32
			updated time.Time
			f       facts
		)
		if c.kind == kindJob {
			var owner []byte
			if err := rows.Scan(&id, &vec, &updated, &f.Eligible, &f.BudgetMin, &f.BudgetMax, &f.Currency, &f.Remote, &f.Skills, &owner, &f.Country); err != nil {
				return nil, nil, wm, err
			}
			if f.Owner, err = shardkey.IDFromBytes(owner); err != nil {
				continue
			}
		} else {
			var gone bool
			var attrs map[string]any
			if err := rows.Scan(&id, &vec, &updated, &f.Eligible, &f.Rate, &f.Country, &f.Skills, &attrs, &f.Region, &gone); err != nil {
				return nil, nil, wm, err
			}
			f.Eligible = f.Eligible && !gone
			f.Attributes = map[string]string{}
			for k, v := range attrs {
				if s, ok := v.(string); ok {
					f.Attributes[k] = s
				}
			}
		}
		if f.ID, err = shardkey.IDFromBytes(id); err != nil || len(vec) != c.dims {
			continue
		}
		if updated.After(last) {
			last = updated
		}
		// The watermark's lag reads recent rows again; one the snapshot already holds as it is now
		// changes nothing, and making a snapshot for it would only churn generations and caches.
		f.updated = updated
		if held := snap.facts[f.ID]; held != nil && held.updated.Equal(updated) {
			continue
		}
		items = append(items, index.Item{ID: f.ID, Vec: vec})
		fs = append(fs, &f)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, wm, err
	}
	// A row committed later with an earlier updated_at (a statement that ran before another's but
	// committed after it) would be missed: the watermark stays a little behind the newest row seen, and
	// re-reading a row is harmless.
	next := wm
	if lag := last.Add(-5 * time.Second); lag.After(wm) {
		next = lag
	}
	return items, fs, next, nil
}

// advance records a shard's watermark once what was read up to it is in a stored snapshot.
func (c *corpus) advance(shard string, wm time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if wm.After(c.watermarks[shard]) {
		c.watermarks[shard] = wm
	}
}

// liveIDs lists the shard's IDs of the corpus that have a vector in the space.
func (c *corpus) liveIDs(ctx context.Context, t shardpool.Target, b shardpool.Bounds, space string, into map[shardkey.ID]bool) error {
	rows, err := t.Pool.Query(ctx, liveIDsSQL, space, c.kind, b.Lo, b.Hi)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]byte, error) {
		var b []byte
		return b, r.Scan(&b)
	})
	if err != nil {
		return err
	}
	for _, raw := range ids {
		if id, err := shardkey.IDFromBytes(raw); err == nil {
			into[id] = true
		}
	}
	return nil
}
