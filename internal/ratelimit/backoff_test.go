package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/8thdegree/meridian/deploy/local/testenv"
)

func TestBackoffDelayGrows(t *testing.T) {
	b := Backoff{Free: 3, Base: time.Second, Max: 10 * time.Second, Window: time.Hour}
	want := []time.Duration{0, 0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for n, w := range want {
		if got := b.Delay(n); got != w {
			t.Errorf("Delay(%d) = %s, want %s", n, got, w)
		}
	}
	if got := b.Delay(1 << 20); got != b.Max {
		t.Errorf("Delay of very many failures = %s, want the cap", got)
	}
	for _, bad := range []Backoff{
		{Free: -1, Base: time.Second, Max: time.Second, Window: time.Second},
		{Free: 1, Base: 0, Max: time.Second, Window: time.Second},
		{Free: 1, Base: 2 * time.Second, Max: time.Second, Window: time.Hour},
		{Free: 1, Base: time.Second, Max: time.Minute, Window: time.Second},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrBadLimit) {
			t.Errorf("%+v: %v", bad, err)
		}
		if _, err := New(nil, nil).Check(context.Background(), "k", bad); err == nil {
			t.Errorf("Check took %+v", bad)
		}
	}
}

// clock is a settable clock shared by limiters.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// backoffSequence runs one key through failures, waits, a success and the window, on limiters that
// must agree (one Redis) or on one limiter alone (Redis down).
func backoffSequence(t *testing.T, ls []*Limiter, clk *clock) {
	t.Helper()
	ctx := context.Background()
	key := uniqueKey(t)
	b := Backoff{Free: 2, Base: time.Second, Max: 8 * time.Second, Window: time.Minute}
	pick := func(i int) *Limiter { return ls[i%len(ls)] }
	check := func(i int, wantFailures int, wantRetry time.Duration) {
		t.Helper()
		st, err := pick(i).Check(ctx, key, b)
		if err != nil {
			t.Fatal(err)
		}
		if st.Failures != wantFailures || st.RetryAfter != wantRetry {
			t.Fatalf("check %d: %+v, want %d failures and %s to wait", i, st, wantFailures, wantRetry)
		}
	}
	// Two free failures: no wait.
	for i := range 2 {
		if st, _ := pick(i).Fail(ctx, key, b); st.RetryAfter != 0 {
			t.Fatalf("free failure %d: %+v", i+1, st)
		}
	}
	check(0, 2, 0)
	// Each further one doubles the wait, seen by every limiter; the wait runs down with the clock.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		st, _ := pick(i).Fail(ctx, key, b)
		if st.RetryAfter != wait {
			t.Fatalf("failure %d: %+v, want %s", i+3, st, wait)
		}
		check(i+1, 3+i, wait)
		clk.add(wait / 2)
		check(i+2, 3+i, wait/2)
		clk.add(wait / 2)
		check(i+3, 3+i, 0) // the wait is over: the key may try again, never locked out
	}
	// A success forgets the failures.
	if err := pick(1).Forget(ctx, key); err != nil && len(ls) > 1 {
		t.Fatal(err)
	}
	check(0, 0, 0)
	// So does the window.
	for range 4 {
		if _, err := pick(0).Fail(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	check(1, 4, 2*time.Second)
	clk.add(b.Window)
	check(0, 0, 0)
	// And a failure after the window starts the count over.
	if st, _ := pick(1).Fail(ctx, key, b); st.Failures != 1 || st.RetryAfter != 0 {
		t.Fatalf("first failure after the window: %+v", st)
	}
}

func TestBackoffSharedInRedis(t *testing.T) {
	addr := testenv.Redis(t)
	clk := &clock{t: time.Unix(1_900_000_000, 0)}
	a, b := New(newRedis(t, addr), nil), New(newRedis(t, addr), nil)
	a.now, b.now = clk.now, clk.now
	backoffSequence(t, []*Limiter{a, b}, clk)
	if a.Local() || b.Local() {
		t.Error("decisions went local with Redis up")
	}
}

func TestBackoffWhenRedisIsDown(t *testing.T) {
	var logs logBuffer
	clk := &clock{t: time.Unix(1_900_000_000, 0)}
	l := New(newRedis(t, closedAddr(t)), logs.logger())
	l.now = clk.now
	backoffSequence(t, []*Limiter{l}, clk)
	if !l.Local() || logs.count(msgDown) != 1 {
		t.Errorf("local %v, switch logged %d times:\n%s", l.Local(), logs.count(msgDown), logs.buf.String())
	}
	nl := New(nil, nil)
	nl.now = clk.now
	backoffSequence(t, []*Limiter{nl}, clk)
}
