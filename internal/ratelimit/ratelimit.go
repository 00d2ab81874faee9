// Package ratelimit limits how often a key (a user, an IP address, a login name) may act, with the
// generic cell rate algorithm (GCRA) run atomically in Redis, so that every API node and edge router
// of a region spends one shared budget per key.
//
// Redis being down must not fail requests, nor switch limits off. When a Redis call fails, or the
// circuit breaker around Redis is open, the Limiter answers from a local limiter per key (a token
// bucket with the same rate and burst, in a bounded LRU), so limits keep holding per process. The
// switch is logged once each way, not per request.
//
// When to use which: Limiter.Allow asks Redis on every call and so is exact, at the cost of a round
// trip; use it for rare, security-relevant limits where the last unit matters (login attempts per
// account, registrations, password resets). For per-request limits on the hot path (per client IP,
// per principal) use the admission subpackage, which admits from a locally held share of the same
// Redis budget and settles in batches.
//
// Backoff is the other policy: it counts failures only (Check, Fail, Forget) and answers a wait that
// doubles with each failure past a few free ones, for attempts whose successes must cost nothing
// (logins). It falls back to per-process counts when Redis is down, like Allow.
package ratelimit

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	golru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/8thdegree/meridian/internal/breaker"
)

// Limit is a budget: Rate events per Period on average, and at most Burst at once.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// Validate reports what is wrong with l.
func (l Limit) Validate() error {
	switch {
	case l.Rate < 1:
		return fmt.Errorf("%w: Rate must be at least 1, got %d", ErrBadLimit, l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("%w: Period must be positive, got %s", ErrBadLimit, l.Period)
	case l.Burst < 1:
		return fmt.Errorf("%w: Burst must be at least 1, got %d", ErrBadLimit, l.Burst)
	case l.Period/time.Duration(l.Rate) < time.Microsecond:
		return fmt.Errorf("%w: %d per %s is faster than one a microsecond", ErrBadLimit, l.Rate, l.Period)
	}
	return nil
}

func (l Limit) String() string { return fmt.Sprintf("%d per %s (burst %d)", l.Rate, l.Period, l.Burst) }

// interval is the time one event's worth of budget takes to come back.
func (l Limit) interval() time.Duration { return l.Period / time.Duration(l.Rate) }

// ErrBadLimit is wrapped by the error Allow returns for a Limit that cannot be enforced.
var ErrBadLimit = errors.New("ratelimit: bad limit")

// Result is the decision on one event.
type Result struct {
	// Allowed says whether the event may happen; the budget was spent only if it may.
	Allowed bool
	Limit   Limit
	// Remaining is how many more events the key may have right now.
	Remaining int
	// RetryAfter is, when not Allowed, how long until one event is allowed again; zero when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key's budget is whole again (Remaining == Burst).
	ResetAfter time.Duration
}

const (
	// redisTimeout bounds one Redis round trip: a rate-limit decision must never hold a request up for
	// long, and a local decision is better than a slow one.
	redisTimeout = 250 * time.Millisecond
	// localKeys bounds the local limiters kept in memory while Redis is away. Past it the least recently
	// used key is forgotten, which at worst gives that key a fresh budget.
	localKeys = 100_000
)

// Limiter decides whether keys are within their limits. It is safe for concurrent use.
type Limiter struct {
	rdb     redis.UniversalClient
	gcra    *redis_rate.Limiter
	breaker *breaker.Breaker
	local   *lru
	log     *slog.Logger
	now     func() time.Time
	timeout time.Duration

	// onLocal is true while decisions come from the local limiters because Redis failed.
	onLocal   atomic.Bool
	decisions *prometheus.CounterVec

	// backoffs are the failure counts of Backoff keys while Redis is away (Check, Fail, Forget).
	localCap    int
	backoffOnce sync.Once
	backoffs    *golru.Cache[string, failures]
}

// New returns a Limiter on rdb. rdb may be nil: every decision is then local to the process.
func New(rdb redis.UniversalClient, log *slog.Logger) *Limiter {
	cfg := breaker.DefaultConfig("redis-ratelimit")
	return newLimiter(rdb, log, cfg, localKeys)
}

func newLimiter(rdb redis.UniversalClient, log *slog.Logger, bcfg breaker.Config, capacity int) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		rdb:      rdb,
		local:    newLRU(capacity),
		localCap: max(capacity, 1),
		log:      log,
		now:      time.Now,
		timeout:  redisTimeout,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_ratelimit_decisions_total",
			Help: "Rate-limit decisions by backend (redis or local) and result (allowed or limited).",
		}, []string{"backend", "result"}),
	}
	if rdb != nil {
		l.gcra = redis_rate.NewLimiter(rdb)
		// The breaker's own log line would repeat ours; it only keeps Redis from being asked while it
		// is known to be down.
		l.breaker, _ = breaker.New(bcfg, nil, nil)
	}
	return l
}

// SetClock makes now the clock of the local limiters and of Backoff counts (tests move it). Call it
// before the limiter is used.
func (l *Limiter) SetClock(now func() time.Time) {
	if now != nil {
		l.now = now
	}
}

// Register adds the limiter's metrics to reg: meridian_ratelimit_decisions_total{backend,result} and
// meridian_ratelimit_local_fallback (1 while Redis is bypassed).
func (l *Limiter) Register(reg prometheus.Registerer) error {
	fallback := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meridian_ratelimit_local_fallback",
		Help: "1 while rate limits are decided by per-process local limiters because Redis is unavailable.",
	}, func() float64 {
		if l.Local() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{l.decisions, fallback} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("ratelimit: registering metrics: %w", err)
		}
	}
	return nil
}

// Local reports whether decisions are currently local because Redis is unavailable (or not configured).
func (l *Limiter) Local() bool { return l.rdb == nil || l.onLocal.Load() }

// Allow spends one event of key's budget under lim if it can. The error is only for a bad lim: when
// Redis fails the decision is made locally.
func (l *Limiter) Allow(ctx context.Context, key string, lim Limit) (Result, error) {
	if err := lim.Validate(); err != nil {
		return Result{}, err
	}
	if l.rdb != nil {
		res, err := l.allowRedis(ctx, key, lim)
		if err == nil {
			l.count("redis", res.Allowed)
			return res, nil
		}
	}
	res := l.local.allow(key, lim, l.now())
	l.count("local", res.Allowed)
	return res, nil
}

func (l *Limiter) allowRedis(ctx context.Context, key string, lim Limit) (Result, error) {
	rr, err := breaker.Call(ctx, l.breaker, func(ctx context.Context) (*redis_rate.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, l.timeout)
		defer cancel()
		return l.gcra.Allow(ctx, key, redis_rate.Limit{Rate: lim.Rate, Burst: lim.Burst, Period: lim.Period})
	})
	if err != nil {
		// A caller that went away says nothing about Redis: answer locally, switch nothing.
		if ctx.Err() == nil && l.onLocal.CompareAndSwap(false, true) {
			l.log.Warn("rate limiter: Redis unavailable, limits are now enforced per process until it is back", "err", err)
		}
		return Result{}, err
	}
	if l.onLocal.CompareAndSwap(true, false) {
		l.log.Info("rate limiter: Redis is back, limits are shared again")
	}
	return Result{
		Allowed:    rr.Allowed > 0,
		Limit:      lim,
		Remaining:  max(rr.Remaining, 0),
		RetryAfter: max(rr.RetryAfter, 0),
		ResetAfter: max(rr.ResetAfter, 0),
	}, nil
}

func (l *Limiter) count(backend string, allowed bool) {
	result := "limited"
	if allowed {
		result = "allowed"
	}
	l.decisions.WithLabelValues(backend, result).Inc()
}

// Reset gives key its whole budget back, in Redis and locally. It returns Redis's error (wrapping
// breaker.ErrOpen while Redis is known to be down); the local state is reset regardless.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	l.local.remove(key)
	if l.rdb == nil {
		return nil
	}
	return l.breaker.Do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, l.timeout)
		defer cancel()
		if err := l.gcra.Reset(ctx, key); err != nil {
			return fmt.Errorf("ratelimit: reset %s: %w", key, err)
		}
		return nil
	})
}

// Header names set by SetHeaders (draft-ietf-httpapi-ratelimit-headers).
const (
	HeaderLimit      = "RateLimit-Limit"
	HeaderRemaining  = "RateLimit-Remaining"
	HeaderReset      = "RateLimit-Reset"
	HeaderPolicy     = "RateLimit-Policy"
	HeaderRetryAfter = "Retry-After"
)

// SetHeaders writes r as rate-limit headers: RateLimit-Limit (the burst, which Remaining counts down
// from), RateLimit-Remaining, RateLimit-Reset (seconds until the budget is whole), RateLimit-Policy
// ("rate;w=period-seconds;burst=n") and, when the event was refused, Retry-After (seconds, at least 1).
func SetHeaders(h http.Header, r Result) {
	h.Set(HeaderLimit, strconv.Itoa(r.Limit.Burst))
	h.Set(HeaderRemaining, strconv.Itoa(max(r.Remaining, 0)))
	h.Set(HeaderReset, strconv.FormatInt(ceilSeconds(r.ResetAfter), 10))
	h.Set(HeaderPolicy, fmt.Sprintf("%d;w=%d;burst=%d", r.Limit.Rate, ceilSeconds(r.Limit.Period), r.Limit.Burst))
	if !r.Allowed {
		h.Set(HeaderRetryAfter, strconv.FormatInt(max(ceilSeconds(r.RetryAfter), 1), 10))
	} else {
		h.Del(HeaderRetryAfter)
	}
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// lru holds a token bucket per key, forgetting the least recently used past its capacity.
type lru struct {
	capacity int

	mu    sync.Mutex
	order *list.List // of *bucket, most recent first
	keys  map[string]*list.Element
}

type bucket struct {
	key string
	lim Limit
	tb  *rate.Limiter
}

func newLRU(capacity int) *lru {
	return &lru{capacity: max(capacity, 1), order: list.New(), keys: map[string]*list.Element{}}
}

func (c *lru) allow(key string, lim Limit, now time.Time) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b *bucket
	if e, ok := c.keys[key]; ok {
		c.order.MoveToFront(e)
		b = e.Value.(*bucket)
		if b.lim != lim {
			b.tb.SetLimitAt(now, rate.Every(lim.interval()))
			b.tb.SetBurstAt(now, lim.Burst)
			b.lim = lim
		}
	} else {
		b = &bucket{key: key, lim: lim, tb: rate.NewLimiter(rate.Every(lim.interval()), lim.Burst)}
		c.keys[key] = c.order.PushFront(b)
		for c.order.Len() > c.capacity {
			old := c.order.Remove(c.order.Back()).(*bucket)
			delete(c.keys, old.key)
		}
	}
	allowed := b.tb.AllowN(now, 1)
	tokens := b.tb.TokensAt(now)
	iv := float64(lim.interval())
	res := Result{
		Allowed:    allowed,
		Limit:      lim,
		Remaining:  max(int(math.Floor(tokens)), 0),
		ResetAfter: time.Duration(math.Ceil((float64(lim.Burst) - tokens) * iv)),
	}
	if !allowed {
		res.RetryAfter = time.Duration(math.Ceil((1 - tokens) * iv))
	}
	return res
}

func (c *lru) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.keys[key]; ok {
		c.order.Remove(e)
		delete(c.keys, key)
	}
}

func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
