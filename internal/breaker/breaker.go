// Package breaker is a circuit breaker for the calls a router or a node makes to things that can fail slowly or
// all at once: Redis, OpenAI, other regions' nodes. It wraps github.com/sony/gobreaker/v2 with
// defaults that suit those calls, keeps a caller's own cancellation from counting against the
// dependency, and turns an open circuit into one sentinel error, ErrOpen, that callers test with
// errors.Is to take their fallback path (a local rate limiter, the database instead of a cache, a
// partial answer instead of a global one).
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// ErrOpen is wrapped by the error Do returns without calling fn because the circuit is open (or
// half-open with its probes already in flight).
var ErrOpen = errors.New("circuit breaker is open")

// State is a breaker's state.
type State = gobreaker.State

// The states, re-exported so callers need not import gobreaker.
const (
	Closed   = gobreaker.StateClosed
	HalfOpen = gobreaker.StateHalfOpen
	Open     = gobreaker.StateOpen
)

// Config configures a breaker.
type Config struct {
	// Name identifies the breaker in logs and metrics ("redis", "openai", "peer:eu-west").
	Name string
	// Failures is how many consecutive failures open the circuit.
	Failures uint32
	// OpenFor is how long an open circuit refuses calls before it lets probes through (half-open).
	OpenFor time.Duration
	// Probes is how many calls a half-open circuit lets through; that many successes in a row close it,
	// one failure opens it again.
	Probes uint32
	// Window is how often a closed circuit forgets its counts, so that rare failures spread over a long
	// time never add up to a trip. Zero keeps counts until a success resets the consecutive count.
	Window time.Duration
	// Healthy, when set, reports errors that say nothing bad about the dependency (a Redis cache miss,
	// a peer's 404): they count as successes. nil errors are always successes.
	Healthy func(err error) bool
	// OnStateChange, when set, is told every transition. It runs under the breaker's lock: it must not
	// call back into the breaker.
	OnStateChange func(name string, from, to State)
}

// DefaultConfig returns the defaults for a dependency called on the request path: five consecutive
// failures open the circuit for five seconds, then one probe decides.
func DefaultConfig(name string) Config {
	return Config{Name: name, Failures: 5, OpenFor: 5 * time.Second, Probes: 1, Window: time.Minute}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("breaker: Name is required")
	case c.Failures == 0:
		return fmt.Errorf("breaker %s: Failures must be at least 1", c.Name)
	case c.OpenFor <= 0:
		return fmt.Errorf("breaker %s: OpenFor must be positive", c.Name)
	case c.Window < 0:
		return fmt.Errorf("breaker %s: Window must not be negative", c.Name)
	}
	return nil
}

// Breaker is one circuit. It is safe for concurrent use.
type Breaker struct {
	name    string
	cb      *gobreaker.CircuitBreaker[struct{}]
	metrics *Metrics
}

// New returns a breaker. A zero Probes means one. log (may be nil) is told every state change; metrics
// (may be nil) records state and refusals.
func New(cfg Config, log *slog.Logger, metrics *Metrics) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newBreaker(cfg, log, metrics), nil
}

func newBreaker(cfg Config, log *slog.Logger, metrics *Metrics) *Breaker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	healthy := cfg.Healthy
	b := &Breaker{name: cfg.Name, metrics: metrics}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: max(cfg.Probes, 1),
		Interval:    cfg.Window,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		IsSuccessful: func(err error) bool {
			return err == nil || (healthy != nil && healthy(err))
		},
		// The caller gave up (its client left): that is no news about the dependency.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			level := slog.LevelWarn
			if to == gobreaker.StateClosed {
				level = slog.LevelInfo
			}
			log.Log(context.Background(), level, "circuit breaker state change", "breaker", name, "from", from.String(), "to", to.String())
			metrics.setState(name, to)
			if cfg.OnStateChange != nil {
				cfg.OnStateChange(name, from, to)
			}
		},
	})
	metrics.setState(cfg.Name, gobreaker.StateClosed)
	return b
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// State returns the breaker's state now.
func (b *Breaker) State() State { return b.cb.State() }

// Do calls fn unless the circuit is open, and counts its outcome. When the circuit refuses the call it
// returns an error wrapping ErrOpen and does not call fn. A ctx that is already done is returned as is,
// without calling fn or counting anything. A panic in fn counts as a failure and is re-raised.
func (b *Breaker) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	_, err := Call(ctx, b, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}

// Call is Do for a function that returns a value.
func Call[T any](ctx context.Context, b *Breaker, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero, out T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	_, err := b.cb.Execute(func() (struct{}, error) {
		var err error
		out, err = fn(ctx)
		return struct{}{}, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		b.metrics.refused(b.name)
		return zero, fmt.Errorf("%s: %w", b.name, ErrOpen)
	}
	return out, err
}

// Set is a family of breakers made from one config on demand, one per name: one per peer region, say.
type Set struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics

	mu sync.Mutex
	m  map[string]*Breaker
}

// NewSet returns a set whose breakers take cfg with their own name. cfg.Name is the prefix of every
// name ("peer" gives "peer:eu-west").
func NewSet(cfg Config, log *slog.Logger, metrics *Metrics) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Set{cfg: cfg, log: log, metrics: metrics, m: map[string]*Breaker{}}, nil
}

// Get returns the breaker for key, making it on first use.
func (s *Set) Get(key string) *Breaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[key]; ok {
		return b
	}
	cfg := s.cfg
	cfg.Name = s.cfg.Name + ":" + key
	// cfg was validated by NewSet and only its name changed, to a non-empty one.
	b := newBreaker(cfg, s.log, s.metrics)
	s.m[key] = b
	return b
}

// Metrics records breakers' states and refusals in Prometheus.
type Metrics struct {
	state   *prometheus.GaugeVec
	refusal *prometheus.CounterVec
}

// NewMetrics registers the breaker metrics with reg:
// meridian_breaker_state{breaker} (0 closed, 1 half-open, 2 open) and
// meridian_breaker_refused_total{breaker}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meridian_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
		}, []string{"breaker"}),
		refusal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_breaker_refused_total",
			Help: "Calls refused because the circuit was open.",
		}, []string{"breaker"}),
	}
	for _, c := range []prometheus.Collector{m.state, m.refusal} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("breaker: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) setState(name string, s State) {
	if m != nil {
		m.state.WithLabelValues(name).Set(float64(s))
	}
}

func (m *Metrics) refused(name string) {
	if m != nil {
		m.refusal.WithLabelValues(name).Inc()
	}
}
