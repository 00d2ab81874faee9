// Package admission enforces rate limits (the edge router's and the API nodes', per client IP and per
// principal) with budgets shared by every process of a region in the region's Redis, at a cost per
// request that does not include a Redis round trip.
//
// The budgets are GCRA cells in Redis, the same algorithm and state layout as internal/ratelimit (the
// nodes' limiter, go-redis/redis_rate), under the router's own keys. Asking Redis on every request
// would add a round trip (50-100 µs on a LAN) to every request and a Lua call to every request's CPU,
// which the edge's latency budget cannot afford; internal/ratelimit's Allow does exactly that, one unit per
// call, so the router uses redis_rate's AllowAtMost (several units in one call) directly. A key's
// decision is made from what Redis last said:
//
//   - Each Redis answer gives the router an allowance: a Share-th of the budget left above the floor
//     (OptimisticFloor, or a quarter of the burst if that is more). While the allowance lasts and the
//     answer is fresh (younger than FreshFor), requests are admitted at once and their debits queued;
//     a flusher sends each key's queued debits to Redis in one call every FlushInterval, and the answer
//     renews the allowance, now counting what other routers spent.
//   - Past the allowance, near the limit, or when the router knows nothing recent, the decision waits
//     for Redis (with the queued debits in the same call), so the budget's last units are shared
//     exactly between routers.
//   - A refusal is remembered until its Retry-After: a client hammering past its limit costs no Redis
//     call at all.
//
// So a router never admits, unseen by Redis, more than a Share-th of what was left above the floor;
// with up to Share routers spending one key at once, the budget is never overdrawn, and with more it is
// overdrawn by at most the others' allowances until their next flush. Small budgets (a burst at or
// under the floor) are decided by Redis every time, exactly.
//
// When Redis fails, or its circuit breaker is open, decisions come from a local limiter per key with
// the same limit (internal/ratelimit's local fallback): limits keep holding per router, and no request waits
// on a dead Redis.
package admission

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/internal/breaker"
	"github.com/8thdegree/meridian/internal/ratelimit"
)

// Config tunes the Limiter.
type Config struct {
	// FlushInterval is how often queued debits go to Redis.
	FlushInterval time.Duration
	// FreshFor is how long what Redis said about a key is trusted for optimistic admission.
	FreshFor time.Duration
	// OptimisticFloor is the part of a budget that is always decided by Redis.
	OptimisticFloor int
	// Share is the inverse of the share of the budget above the floor a router may admit between two
	// Redis answers: the number of routers that can spend one key at once without overdrawing it.
	Share int
	// Timeout bounds one Redis call.
	Timeout time.Duration
	// IdleAfter forgets keys unused for that long.
	IdleAfter time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{FlushInterval: 10 * time.Millisecond, FreshFor: time.Second, OptimisticFloor: 16, Share: 4,
		Timeout: 100 * time.Millisecond, IdleAfter: 2 * time.Minute}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.FlushInterval <= 0 || c.FreshFor <= 0 || c.Timeout <= 0 || c.IdleAfter <= 0:
		return errors.New("admission: FlushInterval, FreshFor, Timeout and IdleAfter must be positive")
	case c.OptimisticFloor < 1 || c.Share < 1:
		return errors.New("admission: OptimisticFloor and Share must be at least 1")
	}
	return nil
}

// Stats counts decisions by how they were made.
type Stats struct {
	// Optimistic: admitted from the last known budget, debit queued.
	Optimistic uint64
	// Synced: decided by a Redis call made for the request.
	Synced uint64
	// Remembered: refused from a refusal still in force, without a call.
	Remembered uint64
	// Local: decided by the local fallback (Redis down or not configured).
	Local uint64
}

// Limiter decides, per key, whether a request is within its limit. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	log   *slog.Logger
	store atomic.Pointer[store] // nil: no Redis, every decision is local
	local *ratelimit.Limiter

	seed   maphash.Seed
	shards [shardCount]shard

	dirtyMu sync.Mutex
	dirty   []dirtyKey

	optimistic, synced, remembered, fallback atomic.Uint64
}

const shardCount = 64

// store is the region's Redis with a circuit breaker around it.
type store struct {
	gcra *redis_rate.Limiter
	cb   *breaker.Breaker
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*entry
}

type dirtyKey struct {
	key string
	e   *entry
}

// entry is what the router knows of one key.
type entry struct {
	mu        sync.Mutex
	lim       ratelimit.Limit
	syncedAt  int64 // unix ns of Redis's last answer; 0: never
	allowance int   // optimistic admissions left until the next answer
	pending   int   // admitted, not yet debited in Redis
	queued    bool  // in the dirty list
	denyUntil int64 // unix ns
	lastUsed  int64 // unix ns
}

// New returns a Limiter on rdb (nil: every decision is local until SetRedis). Run flushes queued
// debits.
func New(rdb redis.UniversalClient, cfg Config, log *slog.Logger) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{cfg: cfg, log: log, local: ratelimit.New(nil, log), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = map[string]*entry{}
	}
	l.SetRedis(rdb)
	return l, nil
}

// SetRedis makes rdb the shared store from now on (nil: local decisions only). The router calls it
// when the topology names its region's Redis.
func (l *Limiter) SetRedis(rdb redis.UniversalClient) {
	if rdb == nil {
		l.store.Store(nil)
		return
	}
	bc := breaker.DefaultConfig("redis-edge-ratelimit")
	// Short: while open, decisions are local and limits only per router.
	bc.OpenFor = time.Second
	cb, _ := breaker.New(bc, l.log, nil) // a default config with a positive OpenFor is valid
	l.store.Store(&store{gcra: redis_rate.NewLimiter(rdb), cb: cb})
}

// Stats returns the decision counters.
func (l *Limiter) Stats() Stats {
	return Stats{Optimistic: l.optimistic.Load(), Synced: l.synced.Load(), Remembered: l.remembered.Load(), Local: l.fallback.Load()}
}

func (l *Limiter) entry(key string, lim ratelimit.Limit) *entry {
	s := &l.shards[maphash.String(l.seed, key)%shardCount]
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e = s.m[key]; e == nil {
		e = &entry{lim: lim}
		s.m[key] = e
	}
	return e
}

func (l *Limiter) floor(lim ratelimit.Limit) int { return max(l.cfg.OptimisticFloor, lim.Burst/4) }

// Allow spends one unit of key's budget under lim if it may. A zero lim means no limit.
func (l *Limiter) Allow(ctx context.Context, key string, lim ratelimit.Limit) ratelimit.Result {
	if lim == (ratelimit.Limit{}) {
		return ratelimit.Result{Allowed: true}
	}
	now := time.Now().UnixNano()
	e := l.entry(key, lim)
	e.mu.Lock()
	if e.lim != lim { // the configuration changed: forget what was known under the old limit
		e.lim, e.allowance, e.syncedAt, e.denyUntil = lim, 0, 0, 0
	}
	e.lastUsed = now
	if now < e.denyUntil {
		d := time.Duration(e.denyUntil - now)
		e.mu.Unlock()
		l.remembered.Add(1)
		return ratelimit.Result{Limit: lim, RetryAfter: d, ResetAfter: resetAfter(lim, 0)}
	}
	st := l.store.Load()
	if st != nil && e.allowance > 0 && now-e.syncedAt < int64(l.cfg.FreshFor) {
		e.allowance--
		e.pending++
		rem := e.allowance * l.cfg.Share // what the router may assume is left, for the headers
		enqueue := !e.queued
		e.queued = true
		e.mu.Unlock()
		if enqueue {
			l.dirtyMu.Lock()
			l.dirty = append(l.dirty, dirtyKey{key: key, e: e})
			l.dirtyMu.Unlock()
		}
		l.optimistic.Add(1)
		return ratelimit.Result{Allowed: true, Limit: lim, Remaining: rem, ResetAfter: resetAfter(lim, rem)}
	}
	n := e.pending + 1
	e.pending = 0
	e.allowance = 0 // renewed by the answer
	e.mu.Unlock()

	if st != nil {
		res, err := st.debit(ctx, l.cfg.Timeout, key, lim, n)
		if err == nil {
			l.synced.Add(1)
			return l.settle(e, lim, n, now, res)
		}
	}
	l.fallback.Add(1)
	res, err := l.local.Allow(ctx, key, lim)
	if err != nil { // a limit the local limiter refuses (validated at configuration): let it pass
		return ratelimit.Result{Allowed: true, Limit: lim}
	}
	return res
}

// settle records Redis's answer to a synchronous debit of n units (n-1 earlier admissions and this
// request) and decides this request.
func (l *Limiter) settle(e *entry, lim ratelimit.Limit, n int, now int64, res *redis_rate.Result) ratelimit.Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	l.renew(e, lim, res)
	if res.Allowed < n {
		// What was left went to the earlier admissions: this one is refused, and so is every request
		// until Redis says a unit is back.
		retry := max(res.RetryAfter, 0)
		if retry > 0 {
			e.denyUntil = now + int64(retry)
		}
		return ratelimit.Result{Limit: lim, RetryAfter: max(retry, time.Millisecond), ResetAfter: max(res.ResetAfter, 0)}
	}
	return ratelimit.Result{Allowed: true, Limit: lim, Remaining: max(res.Remaining, 0), ResetAfter: max(res.ResetAfter, 0)}
}

// renew sets e's allowance from a Redis answer: a Share-th of what is left above the floor, minus what
// was admitted since the call left. e.mu must be held.
func (l *Limiter) renew(e *entry, lim ratelimit.Limit, res *redis_rate.Result) {
	e.syncedAt = time.Now().UnixNano()
	e.allowance = max((res.Remaining-l.floor(lim))/l.cfg.Share-e.pending, 0)
}

// debit spends up to n units of key's budget in Redis; res.Allowed says how many were granted.
func (s *store) debit(ctx context.Context, timeout time.Duration, key string, lim ratelimit.Limit, n int) (*redis_rate.Result, error) {
	return breaker.Call(ctx, s.cb, func(ctx context.Context) (*redis_rate.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return s.gcra.AllowAtMost(ctx, key, redis_rate.Limit{Rate: lim.Rate, Burst: lim.Burst, Period: lim.Period}, n)
	})
}

func resetAfter(lim ratelimit.Limit, remaining int) time.Duration {
	if lim.Rate <= 0 {
		return 0
	}
	return time.Duration(max(lim.Burst-remaining, 0)) * (lim.Period / time.Duration(lim.Rate))
}

// Run flushes queued debits every FlushInterval and forgets idle keys, until ctx is done; then it
// flushes once more (with a short deadline of its own) and returns.
func (l *Limiter) Run(ctx context.Context) error {
	tick := time.NewTicker(l.cfg.FlushInterval)
	defer tick.Stop()
	sweep := time.NewTicker(max(l.cfg.IdleAfter/4, time.Second))
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
			l.Flush(fctx)
			cancel()
			return nil
		case <-tick.C:
			l.Flush(ctx)
		case <-sweep.C:
			l.sweep(time.Now())
		}
	}
}

// Flush sends every queued debit to Redis now.
func (l *Limiter) Flush(ctx context.Context) {
	l.dirtyMu.Lock()
	batch := l.dirty
	l.dirty = nil
	l.dirtyMu.Unlock()
	st := l.store.Load()
	for _, d := range batch {
		e := d.e
		e.mu.Lock()
		n, lim := e.pending, e.lim
		e.pending, e.queued = 0, false
		if n == 0 || st == nil {
			e.mu.Unlock()
			continue
		}
		e.mu.Unlock()
		res, err := st.debit(ctx, l.cfg.Timeout, d.key, lim, n)
		if err != nil {
			// Lost debits only make the budget look larger than it is for a moment; the local fallback
			// takes over if Redis stays away.
			continue
		}
		now := time.Now().UnixNano()
		e.mu.Lock()
		l.renew(e, lim, res)
		if res.Allowed < n && res.RetryAfter > 0 {
			e.denyUntil = now + int64(res.RetryAfter)
		}
		e.mu.Unlock()
	}
}

func (l *Limiter) sweep(now time.Time) {
	cutoff := now.Add(-l.cfg.IdleAfter).UnixNano()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			e.mu.Lock()
			idle := e.lastUsed < cutoff && e.pending == 0 && !e.queued
			e.mu.Unlock()
			if idle {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// Keys returns the number of keys known (for tests and metrics).
func (l *Limiter) Keys() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
