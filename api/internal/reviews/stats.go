package reviews

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Stats summarise the reviews a user received.
type Stats struct {
	UserID  shardkey.ID `json:"user_id"`
	Count   int         `json:"count"`
	Average float64     `json:"average"`
	// Distribution maps each rating ("1" … "5") to how many reviews gave it; every key is present.
	Distribution map[string]int `json:"distribution"`
}

// distribution counts reviews per rating: d[0] is the number of 1-star reviews.
type distribution [MaxRating]int

// statsOf derives the public stats. The average is rounded to two places (what a profile shows) and
// is 0 when there are no reviews.
func statsOf(user shardkey.ID, d distribution) Stats {
	s := Stats{UserID: user, Distribution: make(map[string]int, MaxRating)}
	sum := 0
	for i, n := range d {
		s.Distribution[strconv.Itoa(i+1)] = n
		s.Count += n
		sum += n * (i + 1)
	}
	if s.Count > 0 {
		s.Average = math.Round(float64(sum)*100/float64(s.Count)) / 100
	}
	return s
}

// ErrUnknownUser is returned when stats are asked for a user who does not exist.
var ErrUnknownUser = errors.New("reviews: no such user")

// statsCache keeps each reviewee's distribution in Redis under a key of its own, next to a
// generation counter that every change bumps.
//
// Correctness rests on two rules:
//   - a writer, after its commit, bumps the generation and deletes the entry in one MULTI;
//   - a reader notes the generation before it reads PostgreSQL and stores its result only if the
//     generation has not moved (a Lua check-and-set).
//
// A reader whose snapshot predates a commit therefore either stores before the writer's MULTI (which
// then deletes the entry) or finds the generation moved and stores nothing. A writer that cannot
// reach Redis remembers the reviewee as pending: until the invalidation goes through, this node
// neither reads nor fills that reviewee's entry, and it retries the invalidation before its next
// Redis use. If the pending set overflows, the node stops using the cache altogether for one TTL,
// after which every entry that could be stale has expired. After any Redis error the node leaves
// Redis alone for a short backoff, so a Redis that hangs does not add a timeout to every request.
type statsCache struct {
	rdb        redis.UniversalClient
	ttl        time.Duration
	timeout    time.Duration
	genTTL     time.Duration
	maxPending int
	backoff    time.Duration
	now        func() time.Time
	log        *slog.Logger
	setIfGen   *redis.Script

	// downUntil (unix ns) is when Redis may be tried again after a failure: a Redis that hangs costs
	// one request a timeout, not every request.
	downUntil atomic.Int64

	mu            sync.Mutex
	pending       map[shardkey.ID]struct{}
	bypassUntil   time.Time // set when the pending set overflowed
	npending      atomic.Int64
	bypassing     atomic.Bool
	drainInFlight atomic.Bool
}

// setIfGenScript stores ARGV[2] under KEYS[2] for ARGV[3] ms if the generation KEYS[1] (absent = 0)
// still equals ARGV[1].
const setIfGenScript = `
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`

func newStatsCache(rdb redis.UniversalClient, cfg Config, now func() time.Time, log *slog.Logger) *statsCache {
	return &statsCache{
		rdb:        rdb,
		ttl:        cfg.StatsTTL,
		timeout:    cfg.CacheTimeout,
		genTTL:     cfg.generationTTL(),
		maxPending: cfg.MaxPendingInvalidations,
		backoff:    cfg.FailureBackoff,
		now:        now,
		log:        log,
		setIfGen:   redis.NewScript(setIfGenScript),
		pending:    map[shardkey.ID]struct{}{},
	}
}

// Keys share the hash tag {user ID}, so the script and the MULTI touch one slot in Redis Cluster. v2:
// verified reviews only (v1 entries, which counted every review, are left to expire).
func statsKey(user shardkey.ID) string { return "meridian:reviews:{" + user.String() + "}:stats:v2" }
func genKey(user shardkey.ID) string   { return "meridian:reviews:{" + user.String() + "}:gen" }

// lookup is the outcome of reading the cache.
type lookup struct {
	dist distribution
	hit  bool
	// gen is the generation seen on a miss; canStore says whether a computed result may be stored.
	gen      string
	canStore bool
}

func (c *statsCache) lookup(ctx context.Context, user shardkey.ID) lookup {
	if c.rdb == nil || !c.available() {
		return lookup{}
	}
	// Retry earlier failed invalidations first: if Redis is back, the user may be usable again.
	if !c.drainPending(ctx) || !c.usable(user) {
		return lookup{}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	vals, err := c.rdb.MGet(ctx, statsKey(user), genKey(user)).Result()
	if err != nil || len(vals) != 2 {
		c.failed()
		c.log.LogAttrs(ctx, slog.LevelDebug, "reviews: stats cache read failed; using PostgreSQL", slog.Any("err", err))
		return lookup{}
	}
	if v, ok := vals[0].(string); ok {
		if d, ok := decodeDistribution(v); ok {
			return lookup{dist: d, hit: true}
		}
		// A value we cannot read is treated as a miss; the store below replaces it.
	}
	gen := "0"
	if g, ok := vals[1].(string); ok {
		gen = g
	}
	return lookup{gen: gen, canStore: true}
}

// store caches d if nothing changed since lookup read generation gen.
func (c *statsCache) store(ctx context.Context, user shardkey.ID, gen string, d distribution) {
	if c.rdb == nil || !c.available() || !c.usable(user) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	val, _ := json.Marshal(d) // an array of ints always encodes
	if err := c.setIfGen.Run(ctx, c.rdb, []string{genKey(user), statsKey(user)}, gen, string(val), c.ttl.Milliseconds()).Err(); err != nil {
		c.failed()
		c.log.LogAttrs(ctx, slog.LevelDebug, "reviews: stats cache write failed", slog.Any("err", err))
	}
}

// invalidate runs after a committed change to user's reviews. It must not fail the request: the
// change is committed whatever Redis says.
func (c *statsCache) invalidate(ctx context.Context, user shardkey.ID) {
	if c.rdb == nil {
		return
	}
	if !c.available() {
		c.addPending(user)
		return
	}
	// The commit happened; the invalidation must run even if the client has gone away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	if err := c.invalidateNow(ctx, user); err != nil {
		c.failed()
		c.log.LogAttrs(ctx, slog.LevelWarn, "reviews: stats cache invalidation failed; will retry",
			slog.String("user_id", user.String()), slog.Any("err", err))
		c.addPending(user)
		return
	}
	// A successful round trip means Redis is back: clear what earlier failures left behind.
	c.drainPending(ctx)
}

func (c *statsCache) invalidateNow(ctx context.Context, users ...shardkey.ID) error {
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range users {
			p.Incr(ctx, genKey(u))
			p.PExpire(ctx, genKey(u), c.genTTL)
			p.Del(ctx, statsKey(u))
		}
		return nil
	})
	return err
}

// available reports whether Redis may be tried: not within the backoff after a failure.
func (c *statsCache) available() bool {
	return c.backoff <= 0 || c.now().UnixNano() >= c.downUntil.Load()
}

func (c *statsCache) failed() {
	if c.backoff > 0 {
		c.downUntil.Store(c.now().Add(c.backoff).UnixNano())
	}
}

// usable reports whether the cache may be used for user: not while an invalidation of user is
// pending, nor while the node bypasses the cache after losing track of pending invalidations.
func (c *statsCache) usable(user shardkey.ID) bool {
	if c.bypassing.Load() {
		c.mu.Lock()
		over := !c.now().Before(c.bypassUntil)
		if over {
			c.bypassing.Store(false)
		}
		c.mu.Unlock()
		if !over {
			return false
		}
	}
	if c.npending.Load() == 0 {
		return true
	}
	c.mu.Lock()
	_, pending := c.pending[user]
	c.mu.Unlock()
	return !pending
}

func (c *statsCache) addPending(user shardkey.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pending[user]; ok {
		return
	}
	if len(c.pending) >= c.maxPending {
		// Too many to remember: stop trusting the cache until every entry that may predate a lost
		// invalidation has expired.
		c.bypassUntil = c.now().Add(c.ttl)
		c.bypassing.Store(true)
		c.log.Error("reviews: too many pending stats invalidations; bypassing the cache for one TTL",
			slog.Int("pending", len(c.pending)), slog.Duration("ttl", c.ttl))
		return
	}
	c.pending[user] = struct{}{}
	c.npending.Store(int64(len(c.pending)))
}

// drainBatch bounds one retry round trip.
const drainBatch = 256

// drainPending retries pending invalidations. It returns false when Redis still fails, so the caller
// can skip its own Redis call.
func (c *statsCache) drainPending(ctx context.Context) bool {
	if c.npending.Load() == 0 {
		return true
	}
	if !c.available() {
		return false
	}
	if !c.drainInFlight.CompareAndSwap(false, true) {
		return true // another request is draining; the pending users stay bypassed meanwhile
	}
	defer c.drainInFlight.Store(false)
	for c.npending.Load() > 0 {
		c.mu.Lock()
		batch := make([]shardkey.ID, 0, min(len(c.pending), drainBatch))
		for u := range c.pending {
			if len(batch) == drainBatch {
				break
			}
			batch = append(batch, u)
		}
		c.mu.Unlock()
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		err := c.invalidateNow(tctx, batch...)
		cancel()
		if err != nil {
			c.failed()
			return false
		}
		c.mu.Lock()
		for _, u := range batch {
			delete(c.pending, u)
		}
		c.npending.Store(int64(len(c.pending)))
		c.mu.Unlock()
	}
	return true
}

// decodeDistribution reads a cached value: a JSON array of five non-negative counts.
func decodeDistribution(s string) (distribution, bool) {
	var d distribution
	var raw []int
	if err := json.Unmarshal([]byte(s), &raw); err != nil || len(raw) != MaxRating {
		return d, false
	}
	for i, n := range raw {
		if n < 0 {
			return d, false
		}
		d[i] = n
	}
	return d, true
}
