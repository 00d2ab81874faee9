package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/richtext"
)

// API-key scopes of the jobs endpoints (access tokens have every scope).
const (
	ScopeRead  = "jobs:read"
	ScopeWrite = "jobs:write"
)

// Config bounds the cross-shard reads.
type Config struct {
	// ShardTimeout is each shard's deadline in a search or matching fan-out; a shard that misses it is
	// reported in failed_shards and the others' answers are kept.
	ShardTimeout time.Duration
	// Concurrency is the most shards queried at once by one request.
	Concurrency int
	// PeerTimeout bounds a global search's call to another region's node.
	PeerTimeout time.Duration
}

// DefaultConfig returns the production bounds.
func DefaultConfig() Config {
	return Config{ShardTimeout: 2 * time.Second, Concurrency: 8, PeerTimeout: 3 * time.Second}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.ShardTimeout <= 0:
		return fmt.Errorf("jobs: ShardTimeout must be positive, got %s", c.ShardTimeout)
	case c.Concurrency < 1:
		return fmt.Errorf("jobs: Concurrency must be at least 1, got %d", c.Concurrency)
	case c.PeerTimeout <= 0:
		return fmt.Errorf("jobs: PeerTimeout must be positive, got %s", c.PeerTimeout)
	}
	return nil
}

// Service serves the jobs endpoints of one regional node.
type Service struct {
	a     *feature.Deps
	cfg   Config
	san   *richtext.Sanitizer
	hooks Hooks
}

var _ sanitizer = (*richtext.Sanitizer)(nil)

// New returns the service; hooks are told, in
// the same transaction, when a job stops taking proposals (hiring) and when it changes at all (the
// matching engine). a.Peers may be nil (a node alone): a global search then reports the other regions
// as failed.
func New(a *feature.Deps, cfg Config, hooks Hooks) (*Service, error) {
	switch {
	case a == nil || a.Pools == nil || a.IDs == nil:
		return nil, errors.New("jobs: the app needs Pools and IDs")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{a: a, cfg: cfg, san: richtext.New(), hooks: hooks}, nil
}
