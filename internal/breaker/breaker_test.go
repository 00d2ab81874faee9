package breaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value returns the value of the gauge or counter of the family name with the label breaker=label.
func value(t *testing.T, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "breaker" && l.GetValue() == label {
					return metricValue(m)
				}
			}
		}
	}
	t.Fatalf("no %s{breaker=%q}", name, label)
	return 0
}

func metricValue(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

var errDown = errors.New("dependency down")

func fail(context.Context) error { return errDown }
func ok(context.Context) error   { return nil }

// waitState polls until the breaker reaches want; the breaker moves from open to half-open on its own
// clock, so the test waits for the state rather than for a duration.
func waitState(t *testing.T, b *Breaker, want State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("breaker %s stayed %s, want %s", b.Name(), b.State(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func newTest(t *testing.T, cfg Config, m *Metrics) *Breaker {
	t.Helper()
	b, err := New(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTripsAfterConsecutiveFailuresAndRefusesWithoutCalling(t *testing.T) {
	cfg := DefaultConfig("redis")
	cfg.Failures = 3
	cfg.OpenFor = time.Hour
	b := newTest(t, cfg, nil)
	ctx := context.Background()

	// Failures separated by a success do not add up.
	for range 2 {
		if err := b.Do(ctx, fail); !errors.Is(err, errDown) {
			t.Fatalf("Do = %v, want the dependency's error", err)
		}
	}
	if err := b.Do(ctx, ok); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if b.State() != Closed {
			t.Fatalf("open after %d consecutive failures, want 3", i)
		}
		_ = b.Do(ctx, fail)
	}
	if b.State() != Open {
		t.Fatalf("state %s after 3 consecutive failures, want open", b.State())
	}
	called := false
	err := b.Do(ctx, func(context.Context) error { called = true; return nil })
	if !errors.Is(err, ErrOpen) || called {
		t.Fatalf("open breaker: err %v, fn called %v; want ErrOpen without a call", err, called)
	}
	if !strings.Contains(err.Error(), "redis") {
		t.Errorf("the error %q does not name the breaker", err)
	}
}

func TestHalfOpenProbeClosesOrReopens(t *testing.T) {
	cfg := DefaultConfig("peer")
	cfg.Failures = 1
	cfg.OpenFor = 20 * time.Millisecond
	var transitions []string
	cfg.OnStateChange = func(_ string, from, to State) { transitions = append(transitions, from.String()+">"+to.String()) }
	b := newTest(t, cfg, nil)
	ctx := context.Background()

	_ = b.Do(ctx, fail)
	waitState(t, b, HalfOpen)
	// A failed probe opens the circuit again.
	if err := b.Do(ctx, fail); !errors.Is(err, errDown) {
		t.Fatalf("probe: %v", err)
	}
	if b.State() != Open {
		t.Fatalf("after a failed probe: %s, want open", b.State())
	}
	waitState(t, b, HalfOpen)
	if err := b.Do(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if b.State() != Closed {
		t.Fatalf("after a good probe: %s, want closed", b.State())
	}
	want := "closed>open half-open>open open>half-open"
	got := strings.Join(transitions, " ")
	if !strings.Contains(got, "closed>open") || !strings.Contains(got, "half-open>open") || !strings.HasSuffix(got, "half-open>closed") {
		t.Errorf("transitions %q, want them to include %q and end with half-open>closed", got, want)
	}
}

func TestHalfOpenLetsOnlyTheProbesThrough(t *testing.T) {
	cfg := DefaultConfig("openai")
	cfg.Failures = 1
	cfg.OpenFor = 10 * time.Millisecond
	cfg.Probes = 1
	b := newTest(t, cfg, nil)
	ctx := context.Background()
	_ = b.Do(ctx, fail)
	waitState(t, b, HalfOpen)

	inProbe, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Do(ctx, func(context.Context) error { close(inProbe); <-release; return nil })
	}()
	<-inProbe
	if err := b.Do(ctx, ok); !errors.Is(err, ErrOpen) {
		t.Errorf("second call while the probe is in flight: %v, want ErrOpen", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.State() != Closed {
		t.Errorf("state %s after the probe succeeded", b.State())
	}
}

func TestWhatDoesNotCount(t *testing.T) {
	errMiss := errors.New("cache miss")
	cfg := DefaultConfig("cache")
	cfg.Failures = 2
	cfg.OpenFor = time.Hour
	cfg.Healthy = func(err error) bool { return errors.Is(err, errMiss) }
	b := newTest(t, cfg, nil)

	canceled, cancel := context.WithCancel(context.Background())
	cases := []struct {
		name string
		ctx  context.Context
		fn   func(context.Context) error
		want error
	}{
		{"healthy error", context.Background(), func(context.Context) error { return fmt.Errorf("get: %w", errMiss) }, errMiss},
		{"the caller canceled mid-call", context.Background(), func(context.Context) error { return context.Canceled }, context.Canceled},
		{"ctx already done", canceled, func(context.Context) error { t.Error("fn called with a done ctx"); return errDown }, context.Canceled},
	}
	cancel()
	for _, c := range cases {
		for range 5 {
			if err := b.Do(c.ctx, c.fn); !errors.Is(err, c.want) {
				t.Fatalf("%s: %v, want %v", c.name, err, c.want)
			}
		}
		if b.State() != Closed {
			t.Fatalf("%s tripped the breaker", c.name)
		}
	}
	// A deadline is the dependency being slow: it counts.
	for range 2 {
		_ = b.Do(context.Background(), func(context.Context) error { return context.DeadlineExceeded })
	}
	if b.State() != Open {
		t.Fatalf("timeouts did not trip the breaker: %s", b.State())
	}
}

func TestPanicCountsAndPropagates(t *testing.T) {
	cfg := DefaultConfig("p")
	cfg.Failures = 1
	cfg.OpenFor = time.Hour
	b := newTest(t, cfg, nil)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		_ = b.Do(context.Background(), func(context.Context) error { panic("boom") })
	}()
	if b.State() != Open {
		t.Errorf("a panic did not count as a failure: %s", b.State())
	}
}

func TestCallReturnsTheValue(t *testing.T) {
	b := newTest(t, DefaultConfig("v"), nil)
	n, err := Call(context.Background(), b, func(context.Context) (int, error) { return 42, nil })
	if n != 42 || err != nil {
		t.Fatalf("Call = %d, %v", n, err)
	}
	n, err = Call(context.Background(), b, func(context.Context) (int, error) { return 7, errDown })
	if n != 7 || !errors.Is(err, errDown) {
		t.Fatalf("Call with an error = %d, %v; the value comes back with the error", n, err)
	}
}

func TestSetAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig("peer")
	cfg.Failures = 1
	cfg.OpenFor = time.Hour
	s, err := NewSet(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	eu := s.Get("eu-west")
	if s.Get("eu-west") != eu || s.Get("ap-south") == eu {
		t.Fatal("Set.Get does not keep one breaker per key")
	}
	if eu.Name() != "peer:eu-west" {
		t.Errorf("name %q", eu.Name())
	}
	_ = eu.Do(context.Background(), fail)
	for range 3 {
		_ = eu.Do(context.Background(), ok)
	}
	if got := value(t, reg, "meridian_breaker_state", "peer:eu-west"); got != float64(Open) {
		t.Errorf("state gauge %v, want %v", got, float64(Open))
	}
	if got := value(t, reg, "meridian_breaker_state", "peer:ap-south"); got != float64(Closed) {
		t.Errorf("state gauge of the healthy peer %v", got)
	}
	if got := value(t, reg, "meridian_breaker_refused_total", "peer:eu-west"); got != 3 {
		t.Errorf("refused %v, want 3", got)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering the metrics twice did not fail")
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig("x")
	for _, c := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"no failures", func(c *Config) { c.Failures = 0 }, "Failures"},
		{"no open time", func(c *Config) { c.OpenFor = 0 }, "OpenFor"},
		{"negative window", func(c *Config) { c.Window = -time.Second }, "Window"},
	} {
		cfg := good
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.field)
		}
		if _, err := New(cfg, nil, nil); err == nil {
			t.Errorf("%s: New accepted the config", c.name)
		}
	}
	if err := good.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func BenchmarkDoClosed(b *testing.B) {
	br, err := New(DefaultConfig("bench"), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = br.Do(ctx, ok)
	}
}
