package reviews

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/hiring/side"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// API-key scopes: ScopeWrite to write reviews; reading them needs no credentials, but an API key that
// is presented to read them needs ScopeRead.
const (
	ScopeWrite = "reviews:write"
	ScopeRead  = "reviews:read"
)

// Config tunes the stats cache.
type Config struct {
	// StatsTTL is how long cached stats live. Correctness does not depend on it (changes invalidate
	// the entry); it bounds staleness only when an invalidation is lost with the node that made it.
	StatsTTL time.Duration
	// CacheTimeout bounds each Redis call, so a slow Redis costs a request little before it falls
	// back to PostgreSQL.
	CacheTimeout time.Duration
	// MaxPendingInvalidations is how many failed invalidations a node remembers for retry.
	MaxPendingInvalidations int
	// FailureBackoff is how long the node leaves Redis alone after an error (0: try every time).
	// Meanwhile stats come from PostgreSQL and invalidations are queued for retry.
	FailureBackoff time.Duration
}

// DefaultConfig returns the defaults: a 10-minute TTL, 150 ms per Redis call, 10 000 pending
// invalidations, 1 s of backoff after a Redis error.
func DefaultConfig() Config {
	return Config{StatsTTL: 10 * time.Minute, CacheTimeout: 150 * time.Millisecond, MaxPendingInvalidations: 10000,
		FailureBackoff: time.Second}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.StatsTTL < time.Second:
		return fmt.Errorf("reviews: StatsTTL %v must be at least 1s", c.StatsTTL)
	case c.CacheTimeout <= 0:
		return fmt.Errorf("reviews: CacheTimeout %v must be positive", c.CacheTimeout)
	case c.MaxPendingInvalidations < 1:
		return fmt.Errorf("reviews: MaxPendingInvalidations %d must be at least 1", c.MaxPendingInvalidations)
	case c.FailureBackoff < 0 || c.FailureBackoff > c.StatsTTL:
		return fmt.Errorf("reviews: FailureBackoff %v must be from 0 to StatsTTL", c.FailureBackoff)
	}
	return nil
}

// generationTTL keeps a generation counter far longer than any request that read it can live, and
// longer than the entries it guards.
func (c Config) generationTTL() time.Duration { return max(2*c.StatsTTL, time.Hour) }

// Contracts reads a party's side of a contract on that party's home shard, which must be in this
// node's region; ok is false when user is not a party of the contract or there is no such contract.
// The hiring feature owns contracts and implements it (side.Sides).
type Contracts interface {
	Side(ctx context.Context, user, contract shardkey.ID) (side side.Side, ok bool, err error)
}

// Service serves reviews and review stats.
type Service struct {
	a         *feature.Deps
	san       *richtext.Sanitizer
	cache     *statsCache
	contracts Contracts
}

// New returns the reviews service; contracts binds a review to the contract it is about. Stats are
// cached in a.Redis (nil disables the cache).
func New(a *feature.Deps, cfg Config, contracts Contracts) (*Service, error) {
	switch {
	case a == nil || a.Pools == nil || a.IDs == nil:
		return nil, errors.New("reviews: app with shard pools and an ID generator required")
	case contracts == nil:
		return nil, errors.New("reviews: a contract reader is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now, log := a.Now, a.Log
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{a: a, san: richtext.New(), cache: newStatsCache(a.Redis, cfg, now, log), contracts: contracts}, nil
}

// Rating returns the number of verified reviews user received and their average rating, from the same
// cached stats as GET /reviews/stats. The public profile shows it.
func (s *Service) Rating(ctx context.Context, user shardkey.ID) (int, float64, error) {
	st, err := s.stats(ctx, user)
	if err != nil {
		return 0, 0, err
	}
	return st.Count, st.Average, nil
}

// stats answers for a user homed in this region (a replay error otherwise).
func (s *Service) stats(ctx context.Context, user shardkey.ID) (Stats, error) {
	shard, err := s.a.ReadShard(ctx, user.KeyspaceID())
	if err != nil {
		return Stats{}, err
	}
	look := s.cache.lookup(ctx, user)
	if look.hit {
		return statsOf(user, look.dist), nil
	}
	d, err := countRatings(ctx, shard.Pool, shard.Route.KeyspaceID, user)
	if errors.Is(err, ErrUnknownUser) {
		return Stats{}, apierror.NotFound("user").WithCause(err)
	}
	if err != nil {
		return Stats{}, err
	}
	if look.canStore {
		s.cache.store(ctx, user, look.gen, d)
	}
	return statsOf(user, d), nil
}
