package shardlock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func client(t *testing.T) *consul.Client {
	t.Helper()
	agent := testenv.Consul(t)
	return testenv.ConsulClient(t, agent, local.RoleShardmgr)
}

func uniqueKey(t *testing.T) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "test/shardlock/" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + hex.EncodeToString(b)
}

func TestAcquireHeldRelease(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	key := uniqueKey(t)
	a, err := shardlock.Acquire(ctx, c, key, "move one")
	if err != nil {
		t.Fatal(err)
	}
	if a.Fence() == 0 || a.Session() == "" {
		t.Fatalf("fence %d, session %q", a.Fence(), a.Session())
	}
	_, err = shardlock.Acquire(ctx, c, key, "migrate up")
	var held *shardlock.HeldError
	if !errors.Is(err, shardlock.ErrHeld) || !errors.As(err, &held) || held.Holder.Name != "move one" || held.Delay {
		t.Fatalf("second Acquire = %v, want ErrHeld naming %q", err, "move one")
	}
	if !strings.Contains(err.Error(), `"move one"`) {
		t.Errorf("the error does not name the holder: %v", err)
	}
	// The refused acquirer left no session behind.
	sessions, _, err := c.Session().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if strings.Contains(s.Name, "migrate up") {
			t.Errorf("a refused Acquire left its session %s", s.ID)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Lost():
		t.Fatal("Release reported the lock as lost")
	default:
	}
	// A clean release has no lock-delay: the next holder gets it at once, with a higher fence.
	start := time.Now()
	b, err := shardlock.Acquire(ctx, c, key, "migrate up")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Release(ctx) }()
	if time.Since(start) > 2*time.Second {
		t.Errorf("acquiring after a clean release took %s", time.Since(start))
	}
	if b.Fence() <= a.Fence() {
		t.Errorf("fence %d after %d: want it to grow", b.Fence(), a.Fence())
	}
}

func TestLostWhenSessionInvalidated(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	key := uniqueKey(t)
	l, err := shardlock.AcquireWith(ctx, c, shardlock.Options{Key: key, Holder: "victim", LockDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// An operator (or Consul, at TTL expiry) invalidates the session.
	if _, err := c.Session().Destroy(l.Session(), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed 5 s after the session was destroyed")
	}
	if !errors.Is(l.Err(), shardlock.ErrLost) {
		t.Errorf("Err = %v", l.Err())
	}
	// The successor waits out the lock-delay, then gets it.
	start := time.Now()
	n, err := shardlock.AcquireWith(ctx, c, shardlock.Options{Key: key, Holder: "successor", LockDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("acquired %s after the invalidation", time.Since(start))
	_ = n.Release(ctx)
	_ = l.Release(ctx)
}

func TestAbandonKeepsKeyForLockDelay(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	key := uniqueKey(t)
	l, err := shardlock.AcquireWith(ctx, c, shardlock.Options{Key: key, Holder: "crashes", LockDelay: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l.Abandon(ctx)
	_, err = shardlock.AcquireWith(ctx, c, shardlock.Options{Key: key, Holder: "too early", DelayWait: 100 * time.Millisecond})
	var held *shardlock.HeldError
	if !errors.As(err, &held) || !held.Delay {
		t.Fatalf("Acquire during the lock-delay = %v, want a HeldError with Delay", err)
	}
	n, err := shardlock.Acquire(ctx, c, key, "after the delay")
	if err != nil {
		t.Fatalf("Acquire waiting out the lock-delay: %v", err)
	}
	_ = n.Release(ctx)
}
