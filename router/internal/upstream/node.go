package upstream

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/8thdegree/meridian/internal/breaker"
)

// Errors of Pick.
var (
	// ErrRegionDown: the region has no node that may be tried now.
	ErrRegionDown = errors.New("upstream: no available API node in the region")
	// ErrUnknown: the region's nodes are not known yet (Consul has not answered since start).
	ErrUnknown = errors.New("upstream: the region's API nodes are not known yet")
)

// Outcome is what one attempt on a node says about the node.
type Outcome uint8

const (
	// Success: the node answered (any status that is not a gateway failure, 4xx and 421 included).
	Success Outcome = iota
	// ConnFailure: the connection could not be made or broke; the node is probably gone.
	ConnFailure
	// DialFailure: no connection could be opened at all (refused, unreachable): the node is gone.
	DialFailure
	// Failure: the node answered 502, 503 or 504, or did not answer in time.
	Failure
	// Canceled: the client went away; nothing is learnt about the node.
	Canceled
)

// Health tunes the passive defences.
type Health struct {
	// EjectAfter consecutive connection failures eject a node; a dial failure ejects at once.
	EjectAfter int
	// EjectBase is the first ejection's length; each ejection in a row doubles it, up to EjectMax.
	EjectBase, EjectMax time.Duration
	// BreakerFailures consecutive failures of any kind open a node's circuit for BreakerOpenFor.
	BreakerFailures uint32
	BreakerOpenFor  time.Duration
}

// DefaultHealth returns the defaults.
func DefaultHealth() Health {
	return Health{EjectAfter: 3, EjectBase: 2 * time.Second, EjectMax: 30 * time.Second, BreakerFailures: 5, BreakerOpenFor: 5 * time.Second}
}

// Validate names the first bad field.
func (h Health) Validate() error {
	switch {
	case h.EjectAfter < 1:
		return errors.New("upstream: EjectAfter must be at least 1")
	case h.EjectBase <= 0 || h.EjectMax < h.EjectBase:
		return errors.New("upstream: EjectBase must be positive and EjectMax at least EjectBase")
	case h.BreakerFailures < 1 || h.BreakerOpenFor <= 0:
		return errors.New("upstream: BreakerFailures must be at least 1 and BreakerOpenFor positive")
	}
	return nil
}

// Node is one API node. Its counters survive Consul updates that keep it.
type Node struct {
	// ID is Consul's node name and service ID; Addr is host:port.
	ID, Addr, Region string

	inflight     atomic.Int32
	failures     atomic.Int32 // consecutive connection failures
	ejections    atomic.Int32 // ejections in a row, for the doubling
	ejectedUntil atomic.Int64 // unix nanoseconds
	// openUntil mirrors the breaker's open state (unix ns), so picking reads an atomic instead of taking
	// the breaker's lock: set when the circuit opens, cleared when it half-opens or closes. Past it the
	// breaker itself decides (it half-opens on the next call).
	openUntil atomic.Int64
	cb        *breaker.Breaker
	h         *Health
	log       *slog.Logger
}

func newNode(id, addr, region string, h *Health, log *slog.Logger) *Node {
	n := &Node{ID: id, Addr: addr, Region: region, h: h}
	n.log = log.With("node", n.ID, "addr", n.Addr, "region", region)
	cfg := breaker.DefaultConfig("node:" + id)
	cfg.Failures, cfg.OpenFor, cfg.Probes = h.BreakerFailures, h.BreakerOpenFor, 1
	cfg.OnStateChange = func(_ string, _, to breaker.State) {
		if to == breaker.Open {
			n.openUntil.Store(time.Now().Add(h.BreakerOpenFor).UnixNano())
		} else {
			n.openUntil.Store(0)
		}
	}
	// cfg only differs from a valid default by positive values checked in Health.Validate.
	n.cb, _ = breaker.New(cfg, n.log, nil)
	return n
}

// InFlight is the number of requests the router has on the node now.
func (n *Node) InFlight() int { return int(n.inflight.Load()) }

// Ejected reports whether the node is ejected at now.
func (n *Node) Ejected(now time.Time) bool { return now.UnixNano() < n.ejectedUntil.Load() }

// Open reports whether the node's circuit refuses calls.
func (n *Node) Open() bool { return n.cb.State() == breaker.Open }

func (n *Node) available(now int64) bool {
	return now >= n.ejectedUntil.Load() && now >= n.openUntil.Load()
}

// Acquire counts a request in flight on the node; call the returned release when the response is done.
func (n *Node) Acquire() (release func()) {
	n.inflight.Add(1)
	return func() { n.inflight.Add(-1) }
}

// Call runs one attempt through the node's circuit breaker. fn returns the attempt's result and its
// outcome; Call reports the outcome to the breaker and the ejection logic, and returns breaker.ErrOpen
// (wrapped) without calling fn when the circuit refuses.
func Call[T any](ctx context.Context, n *Node, fn func(ctx context.Context) (T, Outcome, error)) (T, Outcome, error) {
	var (
		out    Outcome
		called bool
	)
	res, err := breaker.Call(ctx, n.cb, func(ctx context.Context) (T, error) {
		var v T
		var err error
		called = true
		v, out, err = fn(ctx)
		switch out {
		case Success:
			return v, nil
		case Canceled:
			return v, context.Canceled // excluded from the breaker's counts
		}
		if err == nil {
			err = errFailedAnswer
		}
		return v, err
	})
	if errors.Is(err, breaker.ErrOpen) {
		return res, Failure, err
	}
	if !called {
		return res, Canceled, err // the caller's context was done before the attempt
	}
	n.record(out, time.Now())
	if out == Success {
		err = nil
	} else if errors.Is(err, errFailedAnswer) {
		err = nil // the answer itself is the result; the caller looks at it
	}
	return res, out, err
}

// errFailedAnswer stands for an answer that counts as a failure (502/503/504) but is not an error.
var errFailedAnswer = errors.New("upstream: failed answer")

// record feeds an outcome to the ejection logic.
func (n *Node) record(o Outcome, now time.Time) {
	switch o {
	case Success:
		n.failures.Store(0)
		if n.ejections.Load() != 0 && now.UnixNano() >= n.ejectedUntil.Load() {
			n.ejections.Store(0)
		}
	case ConnFailure, DialFailure:
		f := n.failures.Add(1)
		if o == DialFailure || int(f) >= n.h.EjectAfter {
			n.eject(now)
		}
	}
}

func (n *Node) eject(now time.Time) {
	k := n.ejections.Add(1)
	d := n.h.EjectBase << min(k-1, 16)
	if d > n.h.EjectMax || d <= 0 {
		d = n.h.EjectMax
	}
	until := now.Add(d).UnixNano()
	// Concurrent failures of one dead node eject it once; the latest deadline wins.
	for {
		cur := n.ejectedUntil.Load()
		if cur >= until || n.ejectedUntil.CompareAndSwap(cur, until) {
			break
		}
	}
	n.failures.Store(0)
	n.log.Warn("API node ejected", "for", d, "ejections_in_a_row", k)
}

// pick chooses a node among nodes by power of two choices on in-flight requests, skipping nodes that
// are unavailable or in skip. It returns nil when none may be tried.
func pick(nodes []*Node, skip []*Node, now int64) *Node {
	n := len(nodes)
	usable := func(c *Node) bool {
		for _, s := range skip {
			if s == c {
				return false
			}
		}
		return c.available(now)
	}
	switch n {
	case 0:
		return nil
	case 1:
		if usable(nodes[0]) {
			return nodes[0]
		}
		return nil
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := nodes[i], nodes[j]
	aok, bok := usable(a), usable(b)
	switch {
	case aok && bok:
		if b.inflight.Load() < a.inflight.Load() {
			return b
		}
		return a
	case aok:
		return a
	case bok:
		return b
	}
	// Both draws were unusable: scan from a random offset, so the survivors share the load.
	off := rand.IntN(n)
	for k := 0; k < n; k++ {
		if c := nodes[(off+k)%n]; usable(c) {
			return c
		}
	}
	return nil
}
