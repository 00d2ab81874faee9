package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	golru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/internal/breaker"
)

// Backoff is a policy of growing delays after failures, for attempts whose successes must cost
// nothing (logins): the first Free failures of a key are free; each failure past them makes the key
// wait before its next attempt, Base after the first and twice as long after each further one, at
// most Max. A key's failures are forgotten Window after its last one, or at once by Forget (a
// success). Unlike a budget that is spent and refused, a key is never shut out for good: once its
// wait is over it may try again.
type Backoff struct {
	Free   int
	Base   time.Duration
	Max    time.Duration
	Window time.Duration
}

// Validate reports what is wrong with b.
func (b Backoff) Validate() error {
	switch {
	case b.Free < 0:
		return fmt.Errorf("%w: Free must not be negative, got %d", ErrBadLimit, b.Free)
	case b.Base <= 0:
		return fmt.Errorf("%w: Base must be positive, got %s", ErrBadLimit, b.Base)
	case b.Max < b.Base:
		return fmt.Errorf("%w: Max (%s) must be at least Base (%s)", ErrBadLimit, b.Max, b.Base)
	case b.Window < b.Max:
		return fmt.Errorf("%w: Window (%s) must be at least Max (%s)", ErrBadLimit, b.Window, b.Max)
	}
	return nil
}

// Delay is the wait after the given number of failures.
func (b Backoff) Delay(failures int) time.Duration {
	if failures <= b.Free {
		return 0
	}
	d := b.Base
	for i := b.Free + 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// BackoffState is what a Backoff says about a key now.
type BackoffState struct {
	// Failures counts the key's failures not yet forgotten.
	Failures int
	// RetryAfter is how long the key must still wait before its next attempt; zero when it may try.
	RetryAfter time.Duration
}

// backoffPrefix keeps the failure counts apart from the GCRA keys of Allow.
const backoffPrefix = "backoff:"

// failScript counts one failure at the caller's clock (ARGV[1], Unix ms) and keeps the key for the
// policy's window (ARGV[2], ms), starting over when the last failure is older than the window (by
// that clock; Redis's own expiry does the same in its time). It returns the new count.
var failScript = redis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if tonumber(ARGV[1]) - last >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 't', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
`)

// failures is a key's count and the time of its last failure.
type failures struct {
	n    int
	last time.Time
}

func (f failures) state(b Backoff, now time.Time) BackoffState {
	if f.n == 0 || now.Sub(f.last) >= b.Window {
		return BackoffState{}
	}
	return BackoffState{Failures: f.n, RetryAfter: max(f.last.Add(b.Delay(f.n)).Sub(now), 0)}
}

// Check says whether key may make an attempt now under b (RetryAfter zero) and how many failures it
// has. Nothing is spent: only Fail counts. The error is only for a bad b; when Redis fails the answer
// comes from this process's own counts, as Allow's does.
func (l *Limiter) Check(ctx context.Context, key string, b Backoff) (BackoffState, error) {
	if err := b.Validate(); err != nil {
		return BackoffState{}, err
	}
	now := l.now()
	if l.rdb != nil {
		f, err := l.redisCall(ctx, func(ctx context.Context) (failures, error) {
			vals, err := l.rdb.HMGet(ctx, backoffPrefix+key, "n", "t").Result()
			if err != nil {
				return failures{}, err
			}
			return parseFailures(vals)
		})
		if err == nil {
			return f.state(b, now), nil
		}
	}
	f, _ := l.backoffLocal().Get(key)
	return f.state(b, now), nil
}

// Fail counts one failure of key under b and returns the key's state after it: RetryAfter is the
// wait the failure imposed on the next attempt.
func (l *Limiter) Fail(ctx context.Context, key string, b Backoff) (BackoffState, error) {
	if err := b.Validate(); err != nil {
		return BackoffState{}, err
	}
	now := l.now()
	local := l.backoffLocal()
	f, _ := local.Get(key)
	if now.Sub(f.last) >= b.Window {
		f = failures{}
	}
	f = failures{n: f.n + 1, last: now}
	// The local count follows every failure, so that a switch to it when Redis goes away starts from
	// what this process saw rather than from nothing.
	local.Add(key, f)
	if l.rdb != nil {
		n, err := l.redisCall(ctx, func(ctx context.Context) (failures, error) {
			n, err := failScript.Run(ctx, l.rdb, []string{backoffPrefix + key}, now.UnixMilli(), b.Window.Milliseconds()).Int()
			return failures{n: n, last: now}, err
		})
		if err == nil {
			f = n
		}
	}
	return f.state(b, now), nil
}

// Forget drops key's failures, in Redis and locally (a success). It returns Redis's error; the local
// count is dropped regardless.
func (l *Limiter) Forget(ctx context.Context, key string) error {
	l.backoffLocal().Remove(key)
	if l.rdb == nil {
		return nil
	}
	_, err := l.redisCall(ctx, func(ctx context.Context) (failures, error) {
		return failures{}, l.rdb.Del(ctx, backoffPrefix+key).Err()
	})
	if err != nil {
		return fmt.Errorf("ratelimit: forget %s: %w", key, err)
	}
	return nil
}

// redisCall runs fn on Redis through the limiter's breaker and timeout, switching to and from local
// decisions as Allow does.
func (l *Limiter) redisCall(ctx context.Context, fn func(context.Context) (failures, error)) (failures, error) {
	f, err := breaker.Call(ctx, l.breaker, func(ctx context.Context) (failures, error) {
		ctx, cancel := context.WithTimeout(ctx, l.timeout)
		defer cancel()
		return fn(ctx)
	})
	if err != nil {
		if ctx.Err() == nil && l.onLocal.CompareAndSwap(false, true) {
			l.log.Warn("rate limiter: Redis unavailable, limits are now enforced per process until it is back", "err", err)
		}
		return failures{}, err
	}
	if l.onLocal.CompareAndSwap(true, false) {
		l.log.Info("rate limiter: Redis is back, limits are shared again")
	}
	return f, nil
}

func parseFailures(vals []any) (failures, error) {
	if len(vals) != 2 || vals[0] == nil {
		return failures{}, nil
	}
	ns, _ := vals[0].(string)
	ts, _ := vals[1].(string)
	n, err1 := strconv.Atoi(ns)
	ms, err2 := strconv.ParseInt(ts, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return failures{}, fmt.Errorf("ratelimit: malformed failure count %q/%q: %w", ns, ts, err)
	}
	return failures{n: n, last: time.UnixMilli(ms)}, nil
}

// backoffLocal returns the local failure counts, made on first use.
func (l *Limiter) backoffLocal() *golru.Cache[string, failures] {
	l.backoffOnce.Do(func() {
		l.backoffs, _ = golru.New[string, failures](l.localCap)
	})
	return l.backoffs
}
