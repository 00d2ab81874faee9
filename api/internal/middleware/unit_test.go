package middleware

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/peers"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/ratelimit"
)

func TestCORSConfigValidate(t *testing.T) {
	for _, c := range []struct {
		origins []string
		creds   bool
		ok      bool
	}{
		{nil, false, true},
		{[]string{"https://app.example"}, true, true},
		{[]string{"https://app.example:8443", "http://localhost:3000"}, false, true},
		{[]string{"https://*.example"}, false, true},
		{[]string{"*"}, false, true},
		{[]string{"*"}, true, false},
		{[]string{"app.example"}, false, false},
		{[]string{"ftp://app.example"}, false, false},
		{[]string{"https://app.example/path"}, false, false},
		{[]string{"https://*.*.example"}, false, false},
		{[]string{"https://"}, false, false},
	} {
		cfg := DefaultCORSConfig()
		cfg.AllowedOrigins, cfg.AllowCredentials = c.origins, c.creds
		err := cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%v credentials=%v: %v", c.origins, c.creds, err)
		}
		if _, merr := CORS(cfg); (merr == nil) != c.ok {
			t.Errorf("CORS(%v) = %v", c.origins, merr)
		}
	}
}

func TestCORSOffWithoutOrigins(t *testing.T) {
	m, err := CORS(DefaultCORSConfig())
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Origin", "https://any.example")
	m(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})).ServeHTTP(rec, r)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS with no origins configured allowed one: %v", rec.Header())
	}
}

func TestRateLimitConfigValidate(t *testing.T) {
	good := DefaultRateLimitConfig()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*RateLimitConfig){
		"User":      func(c *RateLimitConfig) { c.User.Rate = 0 },
		"IP":        func(c *RateLimitConfig) { c.IP.Burst = 0 },
		"route x":   func(c *RateLimitConfig) { c.Routes = map[string]ratelimit.Limit{"x": {}} },
		"KeyPrefix": func(c *RateLimitConfig) { c.KeyPrefix = "" },
	} {
		cfg := good
		edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A bad config fails requests rather than letting them through unlimited.
	bad := good
	bad.User.Period = 0
	h := RateLimit(ratelimit.New(nil, nil), bad)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the handler ran under a bad rate-limit config")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("bad config: %d", rec.Code)
	}
}

func TestBodyLimit(t *testing.T) {
	var read int
	h := BodyLimit(10)(feature.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var body struct {
			A string `json:"a"`
		}
		if err := rest.DecodeBytes(r.Body, &body); err != nil {
			return err
		}
		read = len(body.A)
		return nil
	}))
	for _, c := range []struct {
		name     string
		body     string
		declared int64
		want     int
	}{
		{"fits", `{"a":"x"}`, 9, 200},
		{"declared too large", `{"a":"xxxxxxxxxx"}`, 18, 413},
		{"undeclared too large", `{"a":"xxxxxxxxxx"}`, -1, 413},
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
		r.ContentLength = c.declared
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != c.want {
			t.Errorf("%s: %d %s", c.name, rec.Code, rec.Body)
		}
		if c.want == 413 && !strings.Contains(rec.Body.String(), "request_too_large") {
			t.Errorf("%s: body %s", c.name, rec.Body)
		}
	}
	if read != 1 {
		t.Errorf("the fitting body was not read whole: %d", read)
	}
}

// A panicking handler is counted as a 500 and nothing stays in flight.
func TestMetricsCountPanicsAsServerErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	router := mux.NewRouter()
	router.Use(RecordRoute)
	router.Handle("/boom/{id}", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	h := Chain(router, Recover, m.Middleware)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("BREW", "/boom/1", nil))
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	fams, _ := reg.Gather()
	found := false
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetName() {
			case "meridian_http_requests_total":
				found = labels["method"] == "OTHER" && labels["route"] == "/boom/{id}" && labels["status"] == "5xx" && mt.Counter.GetValue() == 1
			case "meridian_http_requests_in_flight":
				if mt.Gauge.GetValue() != 0 {
					t.Errorf("in flight %v", mt.Gauge.GetValue())
				}
			}
		}
	}
	if !found {
		t.Errorf("no requests_total{method=OTHER,route=/boom/{id},status=5xx} = 1")
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering twice did not fail")
	}
}

func TestStatusClassAndMethodLabel(t *testing.T) {
	for in, want := range map[int]string{200: "2xx", 204: "2xx", 301: "3xx", 404: "4xx", 429: "4xx", 499: "4xx", 503: "5xx", 0: "other", 600: "other"} {
		if got := statusClass(in); got != want {
			t.Errorf("statusClass(%d) = %s", in, got)
		}
	}
	for in, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "OPTIONS": "OPTIONS", "PROPFIND": "OTHER", "get": "OTHER"} {
		if got := methodLabel(in); got != want {
			t.Errorf("methodLabel(%s) = %s", in, got)
		}
	}
}

// An incoming traceparent is continued through a node and carried on to the peer it calls.
func TestTracePropagatesToPeers(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"recording", nil},
		{"no exporter (noop provider)", noop.NewTracerProvider()},
	} {
		t.Run(c.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := c.tp
			if tp == nil {
				sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
				defer func() {
					if err := sdk.Shutdown(context.Background()); err != nil {
						t.Error(err)
					}
				}()
				tp = sdk
			}
			tr := NewTracing(tp, nil)
			var got string
			peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r.Header.Get("traceparent")
				rest.WriteJSON(w, 200, map[string]string{})
			}))
			defer peer.Close()
			client := &http.Client{Transport: tr.Transport(nil)}
			node := httptest.NewServer(tr.Middleware(feature.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				if err := peers.Call(r.Context(), client, peer.URL, "GET", "/api/v1/internal/x", nil, nil); err != nil {
					return err
				}
				w.WriteHeader(204)
				return nil
			})))
			defer node.Close()
			req, _ := http.NewRequest("GET", node.URL, nil)
			req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 204 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			parts := strings.Split(got, "-")
			if len(parts) != 4 || parts[1] != traceID {
				t.Fatalf("the peer got traceparent %q, want trace %s", got, traceID)
			}
			if c.tp != nil {
				return
			}
			// The peer's parent is the node's client span, itself a child of the node's server span.
			var server, clientSpan tracetest.SpanStub
			deadline := time.Now().Add(5 * time.Second)
			for server.Name == "" || clientSpan.Name == "" {
				if time.Now().After(deadline) {
					t.Fatalf("spans: %v", exp.GetSpans())
				}
				for _, s := range exp.GetSpans() {
					switch s.SpanKind {
					case trace.SpanKindServer:
						server = s
					case trace.SpanKindClient:
						clientSpan = s
					}
				}
				time.Sleep(time.Millisecond)
			}
			if parts[2] != clientSpan.SpanContext.SpanID().String() || clientSpan.Parent.SpanID() != server.SpanContext.SpanID() {
				t.Errorf("span chain broken: peer parent %s, client span %s (parent %s), server span %s",
					parts[2], clientSpan.SpanContext.SpanID(), clientSpan.Parent.SpanID(), server.SpanContext.SpanID())
			}
			if clientSpan.Name != "peer GET" {
				t.Errorf("client span name %q", clientSpan.Name)
			}
		})
	}
}

func TestRouteInfoRoundTrip(t *testing.T) {
	ctx := WithRoute(context.Background(), RouteInfo{Name: "jobs.get", Access: feature.Authenticated})
	if ri, ok := RouteFrom(ctx); !ok || ri.Name != "jobs.get" || ri.Access != feature.Authenticated {
		t.Fatalf("RouteFrom = %+v, %v", ri, ok)
	}
	if _, ok := RouteFrom(context.Background()); ok {
		t.Fatal("RouteFrom on a bare context")
	}
	// RecordRoute without a slot (no metrics, tracing or logging outside) is a pass-through.
	called := false
	RecordRoute(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if !called {
		t.Fatal("RecordRoute did not call the handler")
	}
}

func BenchmarkMetricsMiddleware(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	router := mux.NewRouter()
	router.Use(RecordRoute)
	router.Handle("/api/v1/jobs/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	h := m.Middleware(router)
	r := httptest.NewRequest("GET", "/api/v1/jobs/job_1", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func BenchmarkRateLimitLocal(b *testing.B) {
	cfg := DefaultRateLimitConfig()
	cfg.IP = ratelimit.Limit{Rate: 1 << 30, Period: time.Hour, Burst: 1 << 30}
	h := RateLimit(ratelimit.New(nil, nil), cfg)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	r := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
