package revocation

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// RedisKey is the sorted set of a region's revocations in its Redis: member the family ID, score the
// revocation time in Unix milliseconds.
const RedisKey = "meridian:revoked-families"

// InternalPath is the route other regions' nodes read this region's revocations from.
const InternalPath = "/internal/revocations"

// skew is how far back every read reaches before the newest entry it has seen: writers' clocks
// differ, so an entry may land with a score a little below one already read.
const skew = 5 * time.Second

// Source reads the families revoked on one shard since a time (the accounts feature owns the table).
type Source interface {
	RevokedSince(ctx context.Context, t shardpool.Target, since time.Time) ([]Entry, error)
}

// Config is how long revocations are kept and how often each path is read.
type Config struct {
	// Keep is how long after its revocation a family's tokens may still be valid: the access-token
	// lifetime plus the verifiers' leeway.
	Keep time.Duration
	// PollInterval is how often the region's Redis is read.
	PollInterval time.Duration
	// ReconcileInterval is how often the region's shards are read.
	ReconcileInterval time.Duration
	// PeerInterval is how often each other region is asked.
	PeerInterval time.Duration
	// Timeout bounds each read.
	Timeout time.Duration
}

// DefaultConfig keeps revocations for keep and spreads them within about a second in a region.
func DefaultConfig(keep time.Duration) Config {
	return Config{Keep: keep, PollInterval: 250 * time.Millisecond, ReconcileInterval: 10 * time.Second,
		PeerInterval: time.Second, Timeout: 2 * time.Second}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Keep <= 0:
		return errors.New("revocation: Keep must be positive")
	case c.PollInterval <= 0 || c.ReconcileInterval <= 0 || c.PeerInterval <= 0:
		return errors.New("revocation: intervals must be positive")
	case c.Timeout <= 0:
		return errors.New("revocation: Timeout must be positive")
	}
	return nil
}

// Service holds the node's Set and keeps it current.
type Service struct {
	a   *feature.Deps
	cfg Config
	src Source
	set *Set

	mu      sync.Mutex
	redisAt time.Time            // newest score read from Redis
	peerAt  map[string]time.Time // newest revocation read from each region
}

// New returns the node's revocation service; src reads the region's shards.
func New(a *feature.Deps, cfg Config, src Source) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("revocation: no Source")
	}
	return &Service{a: a, cfg: cfg, src: src, set: NewSet(cfg.Keep, a.Now), peerAt: map[string]time.Time{}}, nil
}

// Revoked reports whether tokens of family fam are refused.
func (s *Service) Revoked(fam shardkey.ID) bool { return s.set.Revoked(fam) }

// Len is the number of revoked families held.
func (s *Service) Len() int { return s.set.Len() }

// Published is called after a revocation has committed to the database: this node refuses the
// family at once, and the region's other nodes learn it from Redis. A Redis that is down delays them
// until their next read of the shards; the error is only logged, because the revocation holds.
func (s *Service) Published(ctx context.Context, entries ...Entry) {
	s.set.Add(true, entries...)
	if s.a.Redis == nil || len(entries) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	zs := make([]redis.Z, len(entries))
	for i, e := range entries {
		zs[i] = redis.Z{Score: float64(e.At.UnixMilli()), Member: e.Family.String()}
	}
	_, err := s.a.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, RedisKey, zs...)
		p.ZRemRangeByScore(ctx, RedisKey, "-inf", "("+strconv.FormatInt(s.a.Now().Add(-s.cfg.Keep).UnixMilli(), 10))
		return nil
	})
	if err != nil {
		s.a.Log.Warn("revocation not published to Redis; the region's nodes read it from the shards", "families", len(entries), "err", err)
	}
}

// Task keeps the Set current: Redis every PollInterval, the shards every ReconcileInterval (and at
// once), the other regions every PeerInterval.
func (s *Service) Task() feature.Task {
	return feature.Task{Name: "revocations", Run: s.run}
}

func (s *Service) run(ctx context.Context) error {
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	reconcile := time.NewTicker(s.cfg.ReconcileInterval)
	defer reconcile.Stop()
	peers := time.NewTicker(s.cfg.PeerInterval)
	defer peers.Stop()
	s.Reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			_ = s.PollRedis(ctx)
		case <-reconcile.C:
			s.set.Prune()
			s.Reconcile(ctx)
		case <-peers.C:
			s.PollPeers(ctx)
		}
	}
}

// PollRedis reads the region's Redis for revocations since the newest it has seen.
func (s *Service) PollRedis(ctx context.Context) error {
	if s.a.Redis == nil {
		return nil
	}
	s.mu.Lock()
	from := s.redisAt.Add(-skew)
	s.mu.Unlock()
	if oldest := s.a.Now().Add(-s.cfg.Keep); from.Before(oldest) {
		from = oldest
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	zs, err := s.a.Redis.ZRangeByScoreWithScores(ctx, RedisKey, &redis.ZRangeBy{Min: strconv.FormatInt(from.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return err
	}
	raw := make([]answerEntry, len(zs))
	for i, z := range zs {
		m, _ := z.Member.(string)
		raw[i] = answerEntry{ID: m, At: int64(z.Score)}
	}
	entries, newest := parseEntries(raw)
	s.set.Add(true, entries...)
	s.mu.Lock()
	if newest.After(s.redisAt) {
		s.redisAt = newest
	}
	s.mu.Unlock()
	return nil
}

// Reconcile reads the families revoked within the keep window on every shard of the region. A shard
// that fails is read again next time; nothing else depends on it.
func (s *Service) Reconcile(ctx context.Context) {
	since := s.a.Now().Add(-s.cfg.Keep)
	res := shardpool.Scatter(ctx, s.a.Pools.Targets(s.a.Region), shardpool.ScatterOptions{PerShardTimeout: s.cfg.Timeout},
		func(ctx context.Context, t shardpool.Target) ([]Entry, error) {
			return s.src.RevokedSince(ctx, t, since)
		})
	for _, v := range res.Values {
		s.set.Add(true, v.Value...)
	}
	for _, f := range res.Failed {
		s.a.Log.Warn("revocations: reading a shard failed; trying again later", "shard", f.Shard, "err", f.Err)
	}
}

// answer is what InternalPath returns.
type answer struct {
	Families []answerEntry `json:"families"`
}

type answerEntry struct {
	ID string `json:"id"`
	// At is the revocation time in Unix milliseconds.
	At int64 `json:"at"`
}

// PollPeers asks one node of every other region for its revocations since the newest seen from it.
func (s *Service) PollPeers(ctx context.Context) {
	tab := s.a.Topology()
	if tab == nil || s.a.Peers == nil {
		return
	}
	var wg sync.WaitGroup
	for _, r := range tab.Topology().Regions {
		if r.Name == s.a.Region {
			continue
		}
		wg.Go(func() { s.pollPeer(ctx, r.Name) })
	}
	wg.Wait()
}

func (s *Service) pollPeer(ctx context.Context, region string) {
	s.mu.Lock()
	from := s.peerAt[region].Add(-skew)
	s.mu.Unlock()
	if oldest := s.a.Now().Add(-s.cfg.Keep); from.Before(oldest) {
		from = oldest
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var out answer
	path := feature.InternalPath(InternalPath) + "?since=" + strconv.FormatInt(from.UnixMilli(), 10)
	if err := s.a.Peers.Call(ctx, region, http.MethodGet, path, nil, &out); err != nil {
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			s.a.Log.Debug("revocations: a region did not answer; asking again later", "region", region, "err", err)
		}
		return
	}
	entries, newest := parseEntries(out.Families)
	s.set.Add(false, entries...)
	s.mu.Lock()
	if newest.After(s.peerAt[region]) {
		s.peerAt[region] = newest
	}
	s.mu.Unlock()
}

// parseEntries reads families by ID and Unix milliseconds (from Redis or another region), skipping
// any that is not a family ID, and returns the newest time among them.
func parseEntries(raw []answerEntry) (entries []Entry, newest time.Time) {
	entries = make([]Entry, 0, len(raw))
	for _, e := range raw {
		fam, err := shardkey.ParseIDOfKind(e.ID, shardkey.KindTokenFamily)
		if err != nil {
			continue
		}
		at := time.UnixMilli(e.At)
		entries = append(entries, Entry{Family: fam, At: at})
		if at.After(newest) {
			newest = at
		}
	}
	return entries, newest
}

// Routes is the internal route other regions read from.
func (s *Service) Routes() []feature.Route {
	return []feature.Route{{
		Name: "internalRevocations", Method: http.MethodGet, Path: InternalPath, Access: feature.Internal,
		Handler: s.handleList,
		Doc: map[string]any{
			"summary":     "Sessions this region revoked since a time",
			"description": "Node-to-node only (internal secret); not reachable through the edge router. Other regions' nodes read it every second so that they refuse the revoked sessions' access tokens too.",
			"tags":        []string{"internal"},
			"x-internal":  true,
			"parameters": []any{map[string]any{"name": "since", "in": "query", "required": true,
				"description": "Unix time in milliseconds; families revoked after it are listed.", "schema": map[string]any{"type": "integer", "format": "int64", "minimum": 0}}},
			"responses": map[string]any{
				"200": map[string]any{"description": "The revoked families.", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{
					"type": "object", "required": []string{"families"}, "properties": map[string]any{"families": map[string]any{"type": "array", "items": map[string]any{
						"type": "object", "required": []string{"id", "at"}, "properties": map[string]any{"id": map[string]any{"type": "string"}, "at": map[string]any{"type": "integer", "format": "int64"}}}}}}}}},
				"400": map[string]any{"description": "since is missing or not a non-negative integer."},
			},
		},
	}}
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) error {
	ms, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	if err != nil || ms < 0 {
		return apierror.Invalid(map[string]string{"since": "must be Unix milliseconds, a non-negative integer"})
	}
	out := answer{Families: []answerEntry{}}
	for _, e := range s.set.Local(time.UnixMilli(ms)) {
		out.Families = append(out.Families, answerEntry{ID: e.Family.String(), At: e.At.UnixMilli()})
	}
	rest.WriteJSON(w, http.StatusOK, out)
	return nil
}
