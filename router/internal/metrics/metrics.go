// Package metrics holds the router's Prometheus metrics, on a registry of its own (no global state):
// requests and latency per route template, method, status and upstream region; upstream attempts by
// outcome; replays; rate-limit refusals; regions answered as unavailable; and gauges read at scrape
// time (nodes per region and state, topology version, token keys).
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is the router's set of metrics.
type Metrics struct {
	Registry *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	attempts  *prometheus.CounterVec
	replays   *prometheus.CounterVec
	limited   *prometheus.CounterVec
	down      *prometheus.CounterVec
	inflight  prometheus.Gauge
	resolveBy *prometheus.CounterVec

	// Label lookups hash every label value; the combinations a router sees are few, so the children
	// are kept in maps keyed by comparable values.
	mu       sync.RWMutex
	children map[reqKey]reqChildren
	counters map[counterKey]prometheus.Counter
}

type counterKey struct {
	vec  *prometheus.CounterVec
	a, b string
}

type reqKey struct {
	route, method, region string
	code                  int
}

type reqChildren struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// New returns the metrics, registered on a new registry along with the Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_router_requests_total",
			Help: "Requests answered, by route template, method, status code and upstream region (\"edge\" when the router answered itself).",
		}, []string{"route", "method", "code", "region"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meridian_router_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of its answer, by route template, method and upstream region.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "region"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_router_upstream_attempts_total",
			Help: "Attempts on API nodes, by region and outcome (ok, conn_failure, dial_failure, failure, timeout, canceled, breaker_open).",
		}, []string{"region", "outcome"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_router_replays_total",
			Help: "Requests replayed in the region a node named (421 wrong_region), by the first and the hinted region.",
		}, []string{"from", "to"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_router_rate_limited_total",
			Help: "Requests refused by the edge's rate limits, by limit (ip or principal).",
		}, []string{"limit"}),
		down: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_router_region_unavailable_total",
			Help: "Requests answered 503 region_unavailable, by home region.",
		}, []string{"region"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_router_requests_in_flight",
			Help: "Requests being handled.",
		}),
		resolveBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_router_resolutions_total",
			Help: "How each request's region was decided (path_id, token, own_region, ...).",
		}, []string{"by"}),
		children: map[reqKey]reqChildren{},
		counters: map[counterKey]prometheus.Counter{},
	}
	m.Registry.MustRegister(m.requests, m.duration, m.attempts, m.replays, m.limited, m.down, m.inflight, m.resolveBy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records one answered request.
func (m *Metrics) Observe(route, method string, code int, region string, d time.Duration) {
	k := reqKey{route: route, method: method, region: region, code: code}
	m.mu.RLock()
	c, ok := m.children[k]
	m.mu.RUnlock()
	if !ok {
		c = reqChildren{
			count:    m.requests.WithLabelValues(route, method, strconv.Itoa(code), region),
			duration: m.duration.WithLabelValues(route, method, region),
		}
		m.mu.Lock()
		// Bounded: route templates, methods and regions are finite sets, and codes nearly so.
		if len(m.children) < 4096 {
			m.children[k] = c
		}
		m.mu.Unlock()
	}
	c.count.Inc()
	c.duration.Observe(d.Seconds())
}

// InFlight tracks requests being handled.
func (m *Metrics) InFlight(delta float64) { m.inflight.Add(delta) }

// counter returns vec's child for one or two label values, cached.
func (m *Metrics) counter(vec *prometheus.CounterVec, a, b string) prometheus.Counter {
	k := counterKey{vec: vec, a: a, b: b}
	m.mu.RLock()
	c, ok := m.counters[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	if b == "" {
		c = vec.WithLabelValues(a)
	} else {
		c = vec.WithLabelValues(a, b)
	}
	m.mu.Lock()
	if len(m.counters) < 4096 {
		m.counters[k] = c
	}
	m.mu.Unlock()
	return c
}

// Attempt counts an attempt on a node of region.
func (m *Metrics) Attempt(region, outcome string) { m.counter(m.attempts, region, outcome).Inc() }

// Replay counts a replay from one region to another.
func (m *Metrics) Replay(from, to string) { m.replays.WithLabelValues(from, to).Inc() }

// Limited counts a rate-limit refusal.
func (m *Metrics) Limited(limit string) { m.limited.WithLabelValues(limit).Inc() }

// RegionDown counts a 503 region_unavailable.
func (m *Metrics) RegionDown(region string) { m.down.WithLabelValues(region).Inc() }

// Resolved counts how a request's region was decided.
func (m *Metrics) Resolved(by string) { m.counter(m.resolveBy, by, "").Inc() }

// GaugeFunc registers a gauge computed at scrape time.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter read at scrape time.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Collector registers a custom collector (the node gauges).
func (m *Metrics) Collector(c prometheus.Collector) { m.Registry.MustRegister(c) }

// NodeCount is the number of a region's nodes in one state.
type NodeCount struct {
	Region, State string
	Count         int
}

// NodeStates registers meridian_router_nodes{region,state}, computed at scrape time by f.
func (m *Metrics) NodeStates(f func() []NodeCount) {
	m.Registry.MustRegister(&nodeCollector{f: f, desc: prometheus.NewDesc("meridian_router_nodes",
		"API nodes known per region and state (available, ejected, open).", []string{"region", "state"}, nil)})
}

type nodeCollector struct {
	f    func() []NodeCount
	desc *prometheus.Desc
}

var _ prometheus.Collector = (*nodeCollector)(nil)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.Count), n.Region, n.State)
	}
}
