// Package matching is the matching engine (docs/matching.md): for a job, the best freelancers of the
// region (or, with scope=global, of every region, each region ranking its own people); for a
// freelancer, the best open jobs. Each node holds an in-memory index of its region's vectors
// (subpackage index), loaded from the shards and kept fresh from a watermark and PostgreSQL
// notifications; candidates from the index are scored signal by signal (subpackage score) with the
// weights of the region's serving model (subpackage learn trains them), checked for fairness
// (subpackage fairness), recorded as shown, and cached in Redis. Vectors come from an embedder
// (subpackage embed), recomputed through the shard's outbox when a profile or a job changes.
package matching

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/matching/embed"
	"github.com/8thdegree/meridian/api/internal/matching/score"
	"github.com/8thdegree/meridian/api/internal/outbox"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// API-key scope of the matching endpoints.
const ScopeRead = "matching:read"

// Config tunes the engine.
type Config struct {
	// Candidates is how many nearest vectors the index returns for scoring; the best Limit of them,
	// after the hard filters and the full score, are answered.
	Candidates int
	// Refresh is how often the index looks for changed vectors when no notification came.
	Refresh time.Duration
	// FullReload is how often the index checks which vectors are gone (deleted jobs and accounts).
	FullReload time.Duration
	// CacheTTL bounds how long a cached answer lives (changes invalidate it before that).
	CacheTTL time.Duration
	// Rerank turns on the fairness re-ranking of this region's lists (off by default).
	Rerank bool
	// ShadowRate is the share of queries also answered by an exact scan, to measure recall.
	ShadowRate float64
	// ModelPoll is how often the node reads which model serves.
	ModelPoll time.Duration
	// PeerTimeout bounds a global query's call to another region.
	PeerTimeout time.Duration
	// EmbedBatch bounds the entities one backfill pass embeds per shard.
	EmbedBatch int
}

// DefaultConfig returns the production settings.
func DefaultConfig() Config {
	return Config{Candidates: 800, Refresh: time.Second, FullReload: 5 * time.Minute, CacheTTL: time.Minute,
		ShadowRate: 0.02, ModelPoll: 10 * time.Second, PeerTimeout: 3 * time.Second, EmbedBatch: 200}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Candidates < 10 || c.Candidates > 5000:
		return fmt.Errorf("matching: Candidates %d must be from 10 to 5000", c.Candidates)
	case c.Refresh <= 0 || c.FullReload < c.Refresh:
		return errors.New("matching: need 0 < Refresh <= FullReload")
	case c.CacheTTL < time.Second:
		return errors.New("matching: CacheTTL must be at least 1s")
	case c.ShadowRate < 0 || c.ShadowRate > 1:
		return errors.New("matching: ShadowRate must be from 0 to 1")
	case c.ModelPoll <= 0 || c.PeerTimeout <= 0 || c.EmbedBatch < 1:
		return errors.New("matching: ModelPoll, PeerTimeout and EmbedBatch must be positive")
	}
	return nil
}

// Service is the engine of one node.
type Service struct {
	a       *feature.Deps
	cfg     Config
	out     *outbox.Outbox
	emb     embed.Embedder
	log     *slog.Logger
	metrics *Metrics

	profiles *corpus
	jobs     *corpus
	model    atomic.Pointer[Model]
	ratings  atomic.Pointer[ratings]
	gone     chan goneEntity
	cache    *cache
	// epoch is random per process: generations are counted per process, and cached answers live in
	// the region's Redis, shared by every node.
	epoch string
}

// Model is the ranking model in service: version 0 is the hand-set weights.
type Model struct {
	Version   int           `json:"version"`
	Weights   score.Weights `json:"weights"`
	TrainedAt time.Time     `json:"trained_at"`
}

// ID names the model in answers: region/vN.
func (s *Service) modelID(m *Model) string { return fmt.Sprintf("%s/v%d", s.a.Region, m.Version) }

// New returns the engine on a's shards; emb computes the vectors (embed.NewLocal when no key is
// configured). It registers its outbox kind with out.
func New(a *feature.Deps, cfg Config, out *outbox.Outbox, emb embed.Embedder) (*Service, error) {
	switch {
	case a == nil || a.Pools == nil:
		return nil, errors.New("matching: the app needs Pools")
	case out == nil || emb == nil:
		return nil, errors.New("matching: the outbox and an embedder are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var e [6]byte
	if _, err := rand.Read(e[:]); err != nil {
		return nil, err
	}
	s := &Service{a: a, cfg: cfg, out: out, emb: emb, log: log, metrics: newMetrics(), gone: make(chan goneEntity, 1024),
		epoch: hex.EncodeToString(e[:])}
	s.profiles = newCorpus(kindProfile, emb.Space().Dims)
	s.jobs = newCorpus(kindJob, emb.Space().Dims)
	s.cache = newCache(a.Redis, cfg.CacheTTL, log)
	s.model.Store(&Model{Version: 0, Weights: score.Default()})
	if err := out.Handle(kindEmbed, s.applyEmbed); err != nil {
		return nil, fmt.Errorf("matching: %w", err)
	}
	return s, nil
}

// Tasks are the node's background work for the engine: the index loader, the backfill of missing
// vectors, and the model poller.
func (s *Service) Tasks() []feature.Task {
	return []feature.Task{
		{Name: "matching-index", Run: s.runLoader},
		{Name: "matching-backfill", Run: s.runBackfill},
		{Name: "matching-model", Run: s.runModelPoll},
	}
}

// anchor is the ksid of the region's models: the region's code followed by zeros.
func anchor(code shardkey.Region) shardkey.KeyspaceID {
	return shardkey.KeyspaceID(uint64(code) << 56)
}

func (s *Service) now() time.Time {
	if s.a.Now != nil {
		return s.a.Now()
	}
	return time.Now()
}

// sleep waits d or until ctx is done; false when ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
