package middleware_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/mtls"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/middleware"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/tokenissue"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const allowedOrigin = "https://app.8thdegree.test"

// node is what the test keeps of one region's middleware.
type node struct {
	reg *prometheus.Registry
}

type cluster struct {
	h     *apitest.Harness
	nodes map[string]*node
	spans *tracetest.InMemoryExporter
}

func testRoutes(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
	ok := func(w http.ResponseWriter, r *http.Request) error {
		rest.WriteJSON(w, http.StatusOK, map[string]string{"region": a.Region})
		return nil
	}
	return []feature.Route{
		{Name: "echo", Method: http.MethodGet, Path: "/echo/{id}", Access: feature.Public, Handler: ok},
		{Name: "open", Method: http.MethodGet, Path: "/open", Access: feature.Public, Handler: ok},
		{Name: "me", Method: http.MethodGet, Path: "/me", Access: feature.Authenticated, Handler: ok},
		{Name: "search", Method: http.MethodGet, Path: "/search", Access: feature.Authenticated, Handler: ok},
		{Name: "upload", Method: http.MethodPost, Path: "/upload", Access: feature.Public, Handler: func(w http.ResponseWriter, r *http.Request) error {
			var body struct {
				Text string `json:"text"`
			}
			if err := rest.Decode(w, r, &body); err != nil {
				return err
			}
			rest.WriteJSON(w, http.StatusOK, map[string]int{"len": len(body.Text)})
			return nil
		}},
		{Name: "ping", Method: http.MethodGet, Path: "/internal/ping", Access: feature.Internal, Handler: ok},
	}
}

func randomPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// closedAddr returns a loopback address nothing listens on: a Redis that is down.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCluster runs three nodes with the whole middleware set. The ap-south node's rate limiter talks
// to a Redis that is down, to show that limits hold locally and requests are still served.
func startCluster(t *testing.T) *cluster {
	c := &cluster{nodes: map[string]*node{}, spans: tracetest.NewInMemoryExporter()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(c.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracing := middleware.NewTracing(tp, nil)
	deadRedis := redis.NewClient(&redis.Options{Addr: closedAddr(t)})
	t.Cleanup(func() { deadRedis.Close() })
	prefix := randomPrefix()
	var mu sync.Mutex
	metricsFor := map[string]*middleware.Metrics{}

	c.h = apitest.New(t, apitest.Options{
		Routes: testRoutes,
		Middleware: func(a *feature.Deps) []middleware.Middleware {
			reg := prometheus.NewRegistry()
			m, err := middleware.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			cfg := middleware.DefaultCORSConfig()
			cfg.AllowedOrigins = []string{allowedOrigin}
			cors, err := middleware.CORS(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			c.nodes[a.Region] = &node{reg: reg}
			metricsFor[a.Region] = m
			mu.Unlock()
			return []middleware.Middleware{tracing.Middleware, m.Middleware, cors, middleware.BodyLimit(rest.MaxBodyBytes)}
		},
		RouteMiddleware: func(a *feature.Deps) []middleware.Middleware {
			rdb := redis.UniversalClient(a.Redis)
			if a.Region == "ap-south" {
				rdb = deadRedis
			}
			cfg := middleware.RateLimitConfig{
				User:      ratelimit.Limit{Rate: 3, Period: time.Hour, Burst: 3},
				IP:        ratelimit.Limit{Rate: 1000, Period: time.Hour, Burst: 1000},
				Routes:    map[string]ratelimit.Limit{"search": {Rate: 1, Period: time.Hour, Burst: 1}, "echo": {Rate: 2, Period: time.Hour, Burst: 2}},
				KeyPrefix: prefix,
			}
			mu.Lock()
			cfg.Metrics = metricsFor[a.Region]
			mu.Unlock()
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			return []middleware.Middleware{middleware.RateLimit(ratelimit.New(rdb, a.Log), cfg)}
		},
	})
	return c
}

func TestMiddlewareInANode(t *testing.T) {
	c := startCluster(t)
	h := c.h

	t.Run("per-user limit, shared by the nodes of a Redis", func(t *testing.T) {
		u := h.CreateUser(t, authn.Client, "eu-west")
		for i, region := range []string{"eu-west", "us-east", "eu-west"} {
			r := h.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/me", Token: u.Token})
			if r.Status != 200 || r.Header.Get("RateLimit-Limit") != "3" || r.Header.Get("RateLimit-Remaining") != strconv.Itoa(2-i) {
				t.Fatalf("request %d on %s: %d %v", i, region, r.Status, r.Header)
			}
		}
		r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/me", Token: u.Token})
		if r.Status != http.StatusTooManyRequests || r.ErrorCode() != "rate_limited" {
			t.Fatalf("over the budget: %d %s", r.Status, r.Body)
		}
		retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil || retry < 1 || r.Header.Get("RateLimit-Remaining") != "0" || r.Header.Get("RateLimit-Reset") == "" {
			t.Fatalf("429 headers: %v", r.Header)
		}
		if !strings.Contains(string(r.Body), `"request_id"`) {
			t.Errorf("429 body lacks the request ID: %s", r.Body)
		}
		// Another user has a budget of their own.
		other := h.CreateUser(t, authn.Freelancer, "us-east")
		if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/me", Token: other.Token}); r.Status != 200 {
			t.Fatalf("another user: %d %s", r.Status, r.Body)
		}
		// Requests refused by authentication spend nothing and carry no rate-limit state.
		r = h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/me", Token: "garbage"})
		if r.Status != 401 || r.Header.Get("RateLimit-Limit") != "" {
			t.Fatalf("unauthenticated: %d %v", r.Status, r.Header)
		}
	})

	t.Run("a route's own budget", func(t *testing.T) {
		u := h.CreateUser(t, authn.Client, "us-east")
		if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/search", Token: u.Token}); r.Status != 200 || r.Header.Get("RateLimit-Limit") != "1" {
			t.Fatalf("first search: %d %v", r.Status, r.Header)
		}
		if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/search", Token: u.Token}); r.Status != 429 {
			t.Fatalf("second search: %d", r.Status)
		}
		// The general budget was not spent by the searches.
		if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/me", Token: u.Token}); r.Status != 200 || r.Header.Get("RateLimit-Remaining") != "2" {
			t.Fatalf("me after the searches: %d %v", r.Status, r.Header)
		}
	})

	t.Run("per-IP limit on public routes", func(t *testing.T) {
		for i := range 2 {
			if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/echo/x" + strconv.Itoa(i)}); r.Status != 200 || r.Header.Get("RateLimit-Limit") != "2" {
				t.Fatalf("echo %d: %d %v", i, r.Status, r.Header)
			}
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/echo/y"}); r.Status != 429 || r.Header.Get("Retry-After") == "" {
			t.Fatalf("third echo from the same address: %d %v", r.Status, r.Header)
		}
	})

	t.Run("internal routes are not limited", func(t *testing.T) {
		for range 5 {
			r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/internal/ping", AsNode: "us-east"})
			if r.Status != 200 || r.Header.Get("RateLimit-Limit") != "" {
				t.Fatalf("internal: %d %v", r.Status, r.Header)
			}
		}
	})

	t.Run("limits hold with the node's Redis down", func(t *testing.T) {
		u := h.CreateUser(t, authn.Client, "ap-south")
		for i := range 3 {
			if r := h.Do(t, "ap-south", apitest.Request{Method: "GET", Path: "/api/v1/me", Token: u.Token}); r.Status != 200 || r.Header.Get("RateLimit-Remaining") != strconv.Itoa(2-i) {
				t.Fatalf("request %d: %d %v", i, r.Status, r.Header)
			}
		}
		if r := h.Do(t, "ap-south", apitest.Request{Method: "GET", Path: "/api/v1/me", Token: u.Token}); r.Status != 429 {
			t.Fatalf("over the local budget: %d", r.Status)
		}
	})

	t.Run("body limit", func(t *testing.T) {
		big := `{"text":"` + strings.Repeat("a", rest.MaxBodyBytes) + `"}`
		r := h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/upload", Body: big})
		if r.Status != http.StatusRequestEntityTooLarge || r.ErrorCode() != "request_too_large" {
			t.Fatalf("declared too large: %d %s", r.Status, r.Body)
		}
		// Chunked, with no declared length: the limit trips while reading.
		req, _ := http.NewRequest("POST", h.Nodes["eu-west"].Server.URL+"/api/v1/upload", &chunked{s: big})
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.Client(t, mtls.Router("eu-west")).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked too large: %d", resp.StatusCode)
		}
		if r := h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/upload", Body: map[string]string{"text": "hello"}}); r.Status != 200 {
			t.Fatalf("small body: %d %s", r.Status, r.Body)
		}
	})

	t.Run("CORS", func(t *testing.T) {
		pre := h.Do(t, "eu-west", apitest.Request{Method: "OPTIONS", Path: "/api/v1/me", Header: http.Header{
			"Origin": {allowedOrigin}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"},
		}})
		if pre.Status != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != allowedOrigin ||
			!strings.EqualFold(pre.Header.Get("Access-Control-Allow-Headers"), "authorization") || pre.Header.Get("Access-Control-Max-Age") != "600" {
			t.Fatalf("preflight: %d %v", pre.Status, pre.Header)
		}
		r := h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/open", Header: http.Header{"Origin": {allowedOrigin}}})
		exposed := strings.ToLower(r.Header.Get("Access-Control-Expose-Headers"))
		for _, want := range []string{"x-request-id", "x-meridian-region", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"} {
			if !strings.Contains(exposed, want) {
				t.Errorf("%s is not exposed: %q", want, exposed)
			}
		}
		if r.Header.Get("Access-Control-Allow-Origin") != allowedOrigin {
			t.Errorf("actual request: %v", r.Header)
		}
		evil := h.Do(t, "eu-west", apitest.Request{Method: "OPTIONS", Path: "/api/v1/me", Header: http.Header{
			"Origin": {"https://evil.test"}, "Access-Control-Request-Method": {"GET"},
		}})
		if evil.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("a foreign origin was allowed: %v", evil.Header)
		}
	})

	t.Run("tracing continues the caller's trace", func(t *testing.T) {
		const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/echo/abc", Header: http.Header{
			"Traceparent": {"00-" + traceID + "-" + parent + "-01"},
		}})
		if r.Status != 200 && r.Status != 429 {
			t.Fatalf("echo: %d", r.Status)
		}
		span := waitSpan(t, c.spans, traceID)
		if span.Parent.SpanID().String() != parent || !span.Parent.IsRemote() {
			t.Errorf("parent %v, want the remote span %s", span.Parent, parent)
		}
		if span.Name != "GET /api/v1/echo/{id}" {
			t.Errorf("span name %q", span.Name)
		}
		attrs := map[string]string{}
		for _, a := range span.Attributes {
			attrs[string(a.Key)] = a.Value.String()
		}
		if attrs["http.route"] != "/api/v1/echo/{id}" || attrs["meridian.request_id"] != r.Header.Get("X-Request-ID") {
			t.Errorf("span attributes %v", attrs)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		reg := c.nodes["eu-west"].reg
		for range 2 {
			h.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/no/such/route"})
		}
		if got := counter(t, reg, "meridian_http_requests_total", map[string]string{"method": "GET", "route": "unmatched", "status": "4xx"}); got < 2 {
			t.Errorf("unmatched 404s counted %v, want at least 2", got)
		}
		// The per-user subtest made requests on eu-west: 2 OK, then a refused one on us-east.
		if got := counter(t, reg, "meridian_http_requests_total", map[string]string{"method": "GET", "route": "/api/v1/me", "status": "2xx"}); got < 2 {
			t.Errorf("GET /api/v1/me 2xx counted %v", got)
		}
		if got := counter(t, reg, "meridian_http_rate_limited_total", map[string]string{"route": "/api/v1/echo/{id}", "key": "ip"}); got != 1 {
			t.Errorf("rate-limited echo counted %v, want 1", got)
		}
		// A declared oversized body is refused before routing; the chunked one by its handler, whose
		// 413 may reach the client before the handler has returned and been counted.
		if got := counter(t, reg, "meridian_http_requests_total", map[string]string{"method": "POST", "route": "unmatched", "status": "4xx"}); got != 1 {
			t.Errorf("413s refused before routing counted %v, want 1", got)
		}
		eventually(t, func() bool {
			return counter(t, reg, "meridian_http_requests_total", map[string]string{"method": "POST", "route": "/api/v1/upload", "status": "4xx"}) == 1
		}, "the chunked 413 counted")
		if got := histogramCount(t, reg, "meridian_http_request_duration_seconds", map[string]string{"method": "POST", "route": "/api/v1/upload", "status": "2xx"}); got != 1 {
			t.Errorf("upload durations observed %v, want 1", got)
		}
		if got := counter(t, reg, "meridian_http_requests_in_flight", nil); got != 0 {
			t.Errorf("in flight %v after every request ended", got)
		}
		rec := httptest.NewRecorder()
		middleware.MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `meridian_http_requests_total{method="GET",route="/api/v1/me",status="2xx"}`) {
			t.Errorf("/metrics: %d\n%s", rec.Code, rec.Body.String())
		}
	})
}

// chunked reads like a body of unknown length, so the request is sent chunked.
type chunked struct {
	s string
	i int
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.i >= len(c.s) {
		return 0, io.EOF
	}
	n := copy(p, c.s[c.i:])
	c.i += n
	return n, nil
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never true: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitSpan(t *testing.T, exp *tracetest.InMemoryExporter, traceID string) tracetest.SpanStub {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() == traceID {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no span of trace %s exported", traceID)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// find returns the metric of family name whose labels include want.
func find(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue metrics
				}
			}
			return m
		}
	}
	return nil
}

func counter(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(t, g, name, labels)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s is neither a counter nor a gauge", name)
	return 0
}

func histogramCount(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	m := find(t, g, name, labels)
	if m == nil || m.Histogram == nil {
		return 0
	}
	return m.Histogram.GetSampleCount()
}
