package admission

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/ratelimit"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newLimiter(t *testing.T, rdb redis.UniversalClient) *Limiter {
	t.Helper()
	l, err := New(rdb, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func key(t *testing.T) string { return fmt.Sprintf("test:%s:%d", t.Name(), time.Now().UnixNano()) }

// A small budget is decided by Redis every time: two routers share it exactly.
func TestSmallBudgetIsExactAcrossRouters(t *testing.T) {
	rdb := testRedis(t)
	a, b := newLimiter(t, rdb), newLimiter(t, rdb)
	lim := ratelimit.Limit{Rate: 5, Period: time.Hour, Burst: 5}
	k := key(t)
	allowed := 0
	for i := range 20 {
		l := []*Limiter{a, b}[i%2]
		res := l.Allow(context.Background(), k, lim)
		if res.Allowed {
			allowed++
		} else if res.RetryAfter <= 0 {
			t.Errorf("refusal without RetryAfter: %+v", res)
		}
	}
	if allowed != 5 {
		t.Fatalf("%d allowed, want 5", allowed)
	}
	if s := a.Stats(); s.Optimistic != 0 || s.Local != 0 || s.Synced == 0 || s.Remembered == 0 {
		t.Errorf("stats %+v: want synced and remembered decisions only", s)
	}
}

// A large budget is spent mostly without waiting for Redis, and the debits all reach Redis.
func TestLargeBudgetIsOptimisticAndFlushed(t *testing.T) {
	rdb := testRedis(t)
	a, b := newLimiter(t, rdb), newLimiter(t, rdb)
	lim := ratelimit.Limit{Rate: 1000, Period: time.Hour, Burst: 1000}
	k := key(t)
	for range 100 {
		if !a.Allow(context.Background(), k, lim).Allowed {
			t.Fatal("refused within the budget")
		}
	}
	if s := a.Stats(); s.Optimistic < 50 {
		t.Errorf("only %d of 100 decisions were optimistic (%+v)", s.Optimistic, s)
	}
	a.Flush(context.Background())
	// b knows nothing: its first decision asks Redis, which has every debit of a.
	res := b.Allow(context.Background(), k, lim)
	if !res.Allowed || res.Remaining < 897 || res.Remaining > 899 {
		t.Fatalf("after 100 + 1 debits Redis reports %+v, want about 899 left", res)
	}
}

// Whatever the interleaving, a single router never overdraws, and two routers that never flush
// overdraw by at most one allowance.
func TestOverdraftIsBounded(t *testing.T) {
	rdb := testRedis(t)
	lim := ratelimit.Limit{Rate: 100, Period: time.Hour, Burst: 100}
	a := newLimiter(t, rdb)
	k := key(t)
	allowed := 0
	for range 150 {
		if a.Allow(context.Background(), k, lim).Allowed {
			allowed++
		}
	}
	if allowed != 100 {
		t.Fatalf("one router admitted %d of a budget of 100", allowed)
	}

	b, c := newLimiter(t, rdb), newLimiter(t, rdb)
	k = key(t)
	allowed = 0
	for i := range 300 {
		if []*Limiter{b, c}[i%2].Allow(context.Background(), k, lim).Allowed {
			allowed++
		}
	}
	// floor = max(16, 100/4) = 25; one allowance is at most (100-25)/4 = 18.
	if allowed < 100 || allowed > 118 {
		t.Fatalf("two routers admitted %d of a budget of 100, want 100..118", allowed)
	}
}

func TestRedisDownFallsBackToLocal(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	l := newLimiter(t, rdb)
	lim := ratelimit.Limit{Rate: 3, Period: time.Hour, Burst: 3}
	allowed := 0
	for range 10 {
		if l.Allow(context.Background(), "k", lim).Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("%d allowed, want 3", allowed)
	}
	if s := l.Stats(); s.Local != 10 {
		t.Errorf("stats %+v: want 10 local decisions", s)
	}
	// No limit configured: everything passes, nothing is counted.
	if !l.Allow(context.Background(), "k", ratelimit.Limit{}).Allowed {
		t.Error("a zero limit refused")
	}
}

func TestIdleKeysAreForgotten(t *testing.T) {
	l := newLimiter(t, nil)
	lim := ratelimit.Limit{Rate: 3, Period: time.Hour, Burst: 3}
	for i := range 10 {
		l.Allow(context.Background(), fmt.Sprint(i), lim)
	}
	if l.Keys() != 10 {
		t.Fatalf("%d keys", l.Keys())
	}
	l.sweep(time.Now().Add(DefaultConfig().IdleAfter + time.Second))
	if l.Keys() != 0 {
		t.Fatalf("%d keys left after the sweep", l.Keys())
	}
}

// The optimistic path is the hot path: no allocation, no Redis call.
func BenchmarkAllowOptimistic(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(b)})
	defer rdb.Close()
	l, _ := New(rdb, DefaultConfig(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	lim := ratelimit.Limit{Rate: 1 << 30, Period: time.Second, Burst: 1 << 30}
	k := fmt.Sprintf("bench:%d", time.Now().UnixNano())
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ctx, k, lim)
	}
	b.ReportMetric(float64(l.Stats().Synced), "redis_waits")
}
