package middleware

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics records Prometheus metrics of the HTTP traffic, labelled by method, route template and status
// class, into a registry the node owns.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	rateLimited *prometheus.CounterVec
}

// NewMetrics registers the HTTP metrics with reg:
//
//	meridian_http_requests_total{method,route,status}
//	meridian_http_request_duration_seconds{method,route,status} (histogram)
//	meridian_http_requests_in_flight
//	meridian_http_rate_limited_total{route,key}  (key: user or ip)
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	labels := []string{"method", "route", "status"}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_http_requests_total",
			Help: "HTTP requests served, by method, route template and status class (2xx, 4xx, ...).",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meridian_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by method, route template and status class.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, labels),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_http_rate_limited_total",
			Help: "Requests refused with 429 by the rate limit middleware, by route template and key kind (user or ip).",
		}, []string{"route", "key"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mw: registering metrics: %w", err)
		}
	}
	return m, nil
}

// Middleware records every request. It belongs in server.Options.Middleware; the server's router
// records the route template for it (RecordRoute).
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r, slot := withSlot(r)
		rec := &StatusRecorder{ResponseWriter: w}
		m.inFlight.Inc()
		status := 0
		defer func() {
			m.inFlight.Dec()
			if status == 0 {
				// The handler panicked; Recover, outside, answers 500.
				status = http.StatusInternalServerError
			}
			lv := []string{methodLabel(r.Method), slot.label(), statusClass(status)}
			m.requests.WithLabelValues(lv...).Inc()
			m.duration.WithLabelValues(lv...).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
		status = rec.Status
		if status == 0 {
			status = http.StatusOK
		}
	})
}

// MetricsHandler serves the registry's metrics in the Prometheus formats.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

func (m *Metrics) limited(route, key string) {
	if m != nil {
		m.rateLimited.WithLabelValues(route, key).Inc()
	}
}

// methodLabel keeps the method label to the methods the API knows.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "OTHER"
}

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}
