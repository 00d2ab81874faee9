package ratelimit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/breaker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// uniqueKey keeps tests that share the test Redis apart.
func uniqueKey(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test:" + t.Name() + ":" + hex.EncodeToString(b[:])
}

func newRedis(t testing.TB, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), substr)
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

const (
	msgDown = "Redis unavailable"
	msgBack = "Redis is back"
)

func mustAllow(t *testing.T, l *Limiter, key string, lim Limit) Result {
	t.Helper()
	r, err := l.Allow(context.Background(), key, lim)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedisLimitHolds(t *testing.T) {
	l := New(newRedis(t, testenv.Redis(t)), nil)
	key := uniqueKey(t)
	lim := Limit{Rate: 3, Period: time.Hour, Burst: 3}
	for i := range 3 {
		r := mustAllow(t, l, key, lim)
		if !r.Allowed || r.Remaining != 2-i || r.RetryAfter != 0 || r.ResetAfter <= 0 || r.ResetAfter > time.Hour {
			t.Fatalf("event %d: %+v", i, r)
		}
	}
	r := mustAllow(t, l, key, lim)
	if r.Allowed || r.Remaining != 0 || r.RetryAfter <= 0 || r.RetryAfter > lim.interval() {
		t.Fatalf("over the burst: %+v", r)
	}
	if l.Local() {
		t.Error("decided locally with Redis up")
	}
	// Another key has its own budget.
	if r := mustAllow(t, l, key+":other", lim); !r.Allowed {
		t.Errorf("another key: %+v", r)
	}
	// Reset gives the budget back.
	if err := l.Reset(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if r := mustAllow(t, l, key, lim); !r.Allowed || r.Remaining != 2 {
		t.Errorf("after Reset: %+v", r)
	}
}

func TestRedisBudgetRefills(t *testing.T) {
	l := New(newRedis(t, testenv.Redis(t)), nil)
	key := uniqueKey(t)
	lim := Limit{Rate: 20, Period: time.Second, Burst: 1}
	if r := mustAllow(t, l, key, lim); !r.Allowed {
		t.Fatalf("first: %+v", r)
	}
	r := mustAllow(t, l, key, lim)
	if r.Allowed {
		t.Fatalf("second, at once: %+v", r)
	}
	// Once RetryAfter has passed, by any clock, the next event fits.
	time.Sleep(r.RetryAfter + 5*time.Millisecond)
	if r := mustAllow(t, l, key, lim); !r.Allowed {
		t.Fatalf("after RetryAfter: %+v", r)
	}
}

func TestTwoLimitersShareTheBudget(t *testing.T) {
	addr := testenv.Redis(t)
	a, b := New(newRedis(t, addr), nil), New(newRedis(t, addr), nil)
	key := uniqueKey(t)
	lim := Limit{Rate: 4, Period: time.Hour, Burst: 4}
	allowed := 0
	for i := range 10 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if mustAllow(t, l, key, lim).Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("two limiters allowed %d events together, want the shared burst 4", allowed)
	}
}

func TestConcurrentCallersNeverExceedTheBurst(t *testing.T) {
	l := New(newRedis(t, testenv.Redis(t)), nil)
	key := uniqueKey(t)
	lim := Limit{Rate: 10, Period: time.Hour, Burst: 10}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			r, err := l.Allow(context.Background(), key, lim)
			if err != nil {
				t.Error(err)
			}
			if r.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 10 {
		t.Fatalf("%d of 50 concurrent events allowed, want exactly 10", allowed.Load())
	}
}

func TestFallbackWhenRedisIsUnreachable(t *testing.T) {
	var logs logBuffer
	l := New(newRedis(t, closedAddr(t)), logs.logger())
	key := uniqueKey(t)
	lim := Limit{Rate: 3, Period: time.Hour, Burst: 3}
	for i := range 3 {
		if r := mustAllow(t, l, key, lim); !r.Allowed || r.Remaining != 2-i {
			t.Fatalf("event %d: %+v", i, r)
		}
	}
	for range 20 {
		r := mustAllow(t, l, key, lim)
		if r.Allowed || r.RetryAfter <= 0 {
			t.Fatalf("over the burst, locally: %+v", r)
		}
	}
	if !l.Local() {
		t.Error("Local() is false with Redis unreachable")
	}
	if n := logs.count(msgDown); n != 1 {
		t.Errorf("the switch to local limits was logged %d times, want once:\n%s", n, logs.buf.String())
	}
	// Reset reports Redis's trouble but still clears the local budget.
	if err := l.Reset(context.Background(), key); err == nil {
		t.Error("Reset with Redis down returned no error")
	}
	if r := mustAllow(t, l, key, lim); !r.Allowed {
		t.Errorf("after Reset: %+v", r)
	}
}

func TestNoRedisMeansLocal(t *testing.T) {
	l := New(nil, nil)
	lim := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	if !mustAllow(t, l, "k", lim).Allowed || mustAllow(t, l, "k", lim).Allowed {
		t.Fatal("local-only limiter does not hold the limit")
	}
	if !l.Local() || l.Reset(context.Background(), "k") != nil {
		t.Fatal("local-only limiter")
	}
}

// flakyProxy forwards TCP to Redis until it is cut, when it drops every connection and refuses new
// ones, like a Redis that went away and came back.
type flakyProxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *flakyProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

func (p *flakyProxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestSwitchesToLocalAndBackOnce(t *testing.T) {
	proxy := newFlakyProxy(t, testenv.Redis(t))
	var logs logBuffer
	bcfg := breaker.DefaultConfig("redis-ratelimit")
	bcfg.Failures = 1
	bcfg.OpenFor = 20 * time.Millisecond
	l := newLimiter(newRedis(t, proxy.ln.Addr().String()), logs.logger(), bcfg, localKeys)
	lim := Limit{Rate: 1000, Period: time.Hour, Burst: 1000}
	key := uniqueKey(t)

	mustAllow(t, l, key, lim)
	if l.Local() {
		t.Fatal("local with Redis up")
	}
	proxy.cut()
	for range 30 {
		if r := mustAllow(t, l, key, lim); !r.Allowed {
			t.Fatalf("refused locally within the burst: %+v", r)
		}
	}
	if !l.Local() || logs.count(msgDown) != 1 {
		t.Fatalf("after the cut: local %v, logged %d times:\n%s", l.Local(), logs.count(msgDown), logs.buf.String())
	}
	proxy.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for l.Local() {
		if time.Now().After(deadline) {
			t.Fatalf("never went back to Redis:\n%s", logs.buf.String())
		}
		mustAllow(t, l, key, lim)
		time.Sleep(5 * time.Millisecond)
	}
	for range 10 {
		mustAllow(t, l, key, lim)
	}
	if logs.count(msgDown) != 1 || logs.count(msgBack) != 1 {
		t.Fatalf("switches logged %d down, %d back; want once each:\n%s", logs.count(msgDown), logs.count(msgBack), logs.buf.String())
	}
}

func TestLocalRefillsOnItsClock(t *testing.T) {
	l := New(nil, nil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	lim := Limit{Rate: 1, Period: time.Second, Burst: 2}
	want := []Result{
		{Allowed: true, Limit: lim, Remaining: 1, ResetAfter: time.Second},
		{Allowed: true, Limit: lim, Remaining: 0, ResetAfter: 2 * time.Second},
		{Allowed: false, Limit: lim, Remaining: 0, RetryAfter: time.Second, ResetAfter: 2 * time.Second},
	}
	for i, w := range want {
		if got := mustAllow(t, l, "k", lim); got != w {
			t.Fatalf("event %d: got %+v, want %+v", i, got, w)
		}
	}
	now = now.Add(500 * time.Millisecond)
	if got := mustAllow(t, l, "k", lim); got.Allowed || got.RetryAfter != 500*time.Millisecond {
		t.Fatalf("half a period later: %+v", got)
	}
	now = now.Add(500 * time.Millisecond)
	if got := mustAllow(t, l, "k", lim); !got.Allowed || got.Remaining != 0 {
		t.Fatalf("a period later: %+v", got)
	}
	// A new limit for the same key takes effect without losing what was spent.
	bigger := Limit{Rate: 1, Period: time.Second, Burst: 5}
	if got := mustAllow(t, l, "k", bigger); got.Allowed {
		t.Fatalf("a bigger burst gives no tokens back by itself: %+v", got)
	}
}

func TestLocalMemoryIsBounded(t *testing.T) {
	l := newLimiter(nil, nil, breaker.DefaultConfig("x"), 3)
	lim := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	for _, k := range []string{"a", "b", "c"} {
		mustAllow(t, l, k, lim)
	}
	mustAllow(t, l, "a", lim) // a is now the most recently used
	mustAllow(t, l, "d", lim) // evicts b
	if n := l.local.len(); n != 3 {
		t.Fatalf("%d keys kept, capacity 3", n)
	}
	if !mustAllow(t, l, "b", lim).Allowed {
		t.Error("b was not forgotten")
	}
	if mustAllow(t, l, "d", lim).Allowed {
		t.Error("d, recently used, was forgotten")
	}
}

func TestBadLimits(t *testing.T) {
	l := New(nil, nil)
	for _, lim := range []Limit{
		{},
		{Rate: 0, Period: time.Second, Burst: 1},
		{Rate: 1, Period: 0, Burst: 1},
		{Rate: 1, Period: -time.Second, Burst: 1},
		{Rate: 1, Period: time.Second, Burst: 0},
		{Rate: 1e9, Period: time.Millisecond, Burst: 1},
	} {
		if _, err := l.Allow(context.Background(), "k", lim); !errors.Is(err, ErrBadLimit) {
			t.Errorf("%+v: %v, want ErrBadLimit", lim, err)
		}
	}
}

func TestSetHeaders(t *testing.T) {
	lim := Limit{Rate: 60, Period: time.Minute, Burst: 10}
	for _, c := range []struct {
		name string
		res  Result
		want map[string]string
	}{
		{"allowed", Result{Allowed: true, Limit: lim, Remaining: 7, ResetAfter: 2500 * time.Millisecond},
			map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "7", "RateLimit-Reset": "3", "RateLimit-Policy": "60;w=60;burst=10", "Retry-After": ""}},
		{"refused", Result{Allowed: false, Limit: lim, RetryAfter: 1200 * time.Millisecond, ResetAfter: 10 * time.Second},
			map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "10", "Retry-After": "2"}},
		{"refused, retry at once", Result{Allowed: false, Limit: lim, RetryAfter: time.Millisecond},
			map[string]string{"Retry-After": "1", "RateLimit-Reset": "0"}},
	} {
		h := http.Header{"Retry-After": {"99"}}
		SetHeaders(h, c.res)
		for k, v := range c.want {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", c.name, k, got, v)
			}
		}
	}
}

func BenchmarkAllowRedis(b *testing.B) {
	l := New(newRedis(b, testenv.Redis(b)), nil)
	key := uniqueKey(b)
	lim := Limit{Rate: 1 << 30, Period: time.Hour, Burst: 1 << 30}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, key, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAllowLocal(b *testing.B) {
	l := New(nil, nil)
	lim := Limit{Rate: 1 << 30, Period: time.Hour, Burst: 1 << 30}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, "k", lim); err != nil {
			b.Fatal(err)
		}
	}
}
