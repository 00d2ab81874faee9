package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func testPool(t *testing.T, n int, h Health) *Pool {
	t.Helper()
	p := &Pool{Region: "eu-west", retryAfter: 5 * time.Second}
	nodes := make([]*Node, n)
	for i := range nodes {
		nodes[i] = newNode(fmt.Sprintf("n%d", i), fmt.Sprintf("127.0.0.1:%d", 9000+i), "eu-west", &h, slog.New(slog.DiscardHandler))
	}
	p.nodes.Store(&nodes)
	p.known.Store(true)
	return p
}

func TestPickUnknownAndEmpty(t *testing.T) {
	p := &Pool{Region: "x", retryAfter: 3 * time.Second}
	if _, err := p.Pick(nil); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown pool: %v", err)
	}
	empty := []*Node{}
	p.nodes.Store(&empty)
	p.known.Store(true)
	_, err := p.Pick(nil)
	var down *DownError
	if !errors.As(err, &down) || !errors.Is(err, ErrRegionDown) || down.RetryAfter != 3*time.Second {
		t.Fatalf("empty pool: %v", err)
	}
}

// Power of two choices sends nearly nothing to the busiest node and spreads the rest.
func TestPickPrefersLessBusy(t *testing.T) {
	p := testPool(t, 3, DefaultHealth())
	nodes := p.Nodes()
	nodes[0].inflight.Store(50)
	counts := map[*Node]int{}
	for range 3000 {
		n, err := p.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		counts[n]++
	}
	if counts[nodes[0]] != 0 {
		t.Errorf("the busy node was picked %d times", counts[nodes[0]])
	}
	if counts[nodes[1]] < 1000 || counts[nodes[2]] < 1000 {
		t.Errorf("uneven spread over idle nodes: %d / %d", counts[nodes[1]], counts[nodes[2]])
	}
}

func TestPickSkipsTriedEjectedAndOpen(t *testing.T) {
	h := DefaultHealth()
	h.BreakerFailures = 2
	p := testPool(t, 3, h)
	nodes := p.Nodes()
	ctx := context.Background()

	nodes[0].record(DialFailure, time.Now())
	if !nodes[0].Ejected(time.Now()) {
		t.Fatal("a dial failure did not eject the node")
	}
	for range 2 {
		_, _, _ = Call(ctx, nodes[1], func(context.Context) (int, Outcome, error) { return 0, Failure, nil })
	}
	if !nodes[1].Open() {
		t.Fatal("two failures did not open the circuit")
	}
	if nodes[1].Ejected(time.Now()) {
		t.Fatal("failed answers must not eject (the node is up)")
	}
	for range 100 {
		n, err := p.Pick(nil)
		if err != nil || n != nodes[2] {
			t.Fatalf("picked %v, %v; want n2", n, err)
		}
	}
	_, err := p.Pick([]*Node{nodes[2]})
	var down *DownError
	if !errors.As(err, &down) {
		t.Fatalf("all unavailable: %v", err)
	}
	// Retry-After is the time until n0's ejection ends, at least a second.
	if down.RetryAfter < time.Second || down.RetryAfter > h.EjectBase {
		t.Errorf("RetryAfter %v", down.RetryAfter)
	}
	// An open circuit refuses the call without running it.
	ran := false
	_, _, err = Call(ctx, nodes[1], func(context.Context) (int, Outcome, error) { ran = true; return 0, Success, nil })
	if ran || err == nil {
		t.Errorf("open circuit ran the call (err %v)", err)
	}
}

func TestEjectionDoublesAndResets(t *testing.T) {
	h := Health{EjectAfter: 3, EjectBase: time.Second, EjectMax: 3 * time.Second, BreakerFailures: 100, BreakerOpenFor: time.Second}
	p := testPool(t, 1, h)
	n := p.Nodes()[0]
	now := time.Unix(1000, 0)
	for i := range 2 {
		n.record(ConnFailure, now)
		if n.Ejected(now) {
			t.Fatalf("ejected after %d connection failures", i+1)
		}
	}
	n.record(ConnFailure, now)
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
	for i, d := range want {
		if i > 0 {
			now = now.Add(time.Hour)
			n.record(DialFailure, now)
		}
		until := time.Unix(0, n.ejectedUntil.Load())
		if got := until.Sub(now); got != d {
			t.Errorf("ejection %d lasts %v, want %v", i+1, got, d)
		}
	}
	now = now.Add(time.Hour)
	n.record(Success, now)
	n.record(DialFailure, now)
	if got := time.Unix(0, n.ejectedUntil.Load()).Sub(now); got != time.Second {
		t.Errorf("after a success the ejection lasts %v, want the base", got)
	}
}

func TestCanceledTeachesNothing(t *testing.T) {
	h := DefaultHealth()
	h.BreakerFailures = 1
	p := testPool(t, 1, h)
	n := p.Nodes()[0]
	for range 5 {
		_, out, _ := Call(context.Background(), n, func(context.Context) (int, Outcome, error) { return 0, Canceled, context.Canceled })
		if out != Canceled {
			t.Fatalf("outcome %v", out)
		}
	}
	if n.Open() || n.Ejected(time.Now()) {
		t.Error("a client's cancellation counted against the node")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	_, out, _ := Call(ctx, n, func(context.Context) (int, Outcome, error) { ran = true; return 0, Success, nil })
	if ran || out != Canceled {
		t.Errorf("a done context ran the call (%v) or was not reported canceled (%v)", ran, out)
	}
}

func BenchmarkPick(b *testing.B) {
	p := &Pool{Region: "eu-west", retryAfter: time.Second}
	h := DefaultHealth()
	nodes := make([]*Node, 8)
	for i := range nodes {
		nodes[i] = newNode(fmt.Sprint(i), "127.0.0.1:1", "eu-west", &h, slog.New(slog.DiscardHandler))
	}
	p.nodes.Store(&nodes)
	p.known.Store(true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n, _ := p.Pick(nil)
			n.inflight.Add(1)
			n.inflight.Add(-1)
		}
	})
}
