package matching

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// cached is a ranked list as the cache keeps it (without the list ID, which each serving gets anew).
type cached struct {
	Page   Page           `json:"page"`
	Ranked []Ranked       `json:"ranked"`
	Pool   map[string]int `json:"pool"`
}

// cache keeps answers in the region's Redis. Keys name the generations of both corpora and the
// model, so any change of a vector, of the facts of an entity or of the serving model makes a new key
// and the old entry is never read again (it expires after the TTL). Redis down: no cache, and after
// an error the node leaves Redis alone for a second.
type cache struct {
	rdb     redis.UniversalClient
	ttl     time.Duration
	log     *slog.Logger
	timeout time.Duration
	until   atomic.Int64 // unix nanos before which Redis is not asked
}

func newCache(rdb redis.UniversalClient, ttl time.Duration, log *slog.Logger) *cache {
	return &cache{rdb: rdb, ttl: ttl, log: log, timeout: 100 * time.Millisecond}
}

func (c *cache) usable() bool { return c.rdb != nil && time.Now().UnixNano() >= c.until.Load() }

func (c *cache) failed(err error) {
	c.until.Store(time.Now().Add(time.Second).UnixNano())
	c.log.Debug("matching: cache unavailable", "err", err)
}

func (c *cache) get(ctx context.Context, key string) (cached, bool) {
	if !c.usable() {
		return cached{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	raw, err := c.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return cached{}, false
	}
	if err != nil {
		c.failed(err)
		return cached{}, false
	}
	var v cached
	if json.Unmarshal(raw, &v) != nil {
		return cached{}, false
	}
	return v, true
}

func (c *cache) put(ctx context.Context, key string, v cached) {
	if !c.usable() {
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.rdb.Set(ctx, key, raw, c.ttl).Err(); err != nil {
		c.failed(err)
	}
}
