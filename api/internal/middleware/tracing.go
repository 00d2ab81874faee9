package middleware

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/requestid"
)

// Tracing makes an OpenTelemetry server span per request, continuing the trace of an incoming
// traceparent header (the edge router's), and a client span per outgoing peer call that carries the
// trace on in its own traceparent.
type Tracing struct {
	tp   trace.TracerProvider
	prop propagation.TextMapPropagator
}

// NewTracing returns tracing through tp. A nil prop means W3C Trace Context (traceparent, tracestate).
func NewTracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) *Tracing {
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	return &Tracing{tp: tp, prop: prop}
}

func (t *Tracing) options() []otelhttp.Option {
	return []otelhttp.Option{
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(t.prop),
		// Prometheus has the HTTP metrics (Metrics); otelhttp's own would be a second, unexported copy.
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
	}
}

// Middleware traces every request. The span is named "METHOD /route/{template}" once the router has
// matched it, carries http.route and the request ID, and the request's logger gains trace_id and span_id
// so that log lines and traces can be joined.
//
// With a no-op tracer provider (no exporter configured) no span is recorded, so the middleware only
// continues the incoming trace context: peer calls still carry the caller's traceparent, and the cost
// of otelhttp's wrapping is not paid on every request.
func (t *Tracing) Middleware(next http.Handler) http.Handler {
	if _, ok := t.tp.(tracenoop.TracerProvider); ok {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
				l := rest.Logger(ctx).With("trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String())
				ctx = rest.WithLogger(ctx, l)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		span := trace.SpanFromContext(r.Context())
		r, slot := withSlot(r)
		if sc := span.SpanContext(); sc.IsValid() {
			l := rest.Logger(r.Context()).With("trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String())
			r = r.WithContext(rest.WithLogger(r.Context(), l))
		}
		if rid := requestid.From(r.Context()); rid != "" {
			span.SetAttributes(attribute.String("meridian.request_id", rid))
		}
		next.ServeHTTP(w, r)
		if slot.template != "" {
			span.SetName(r.Method + " " + slot.template)
			span.SetAttributes(attribute.String("http.route", slot.template))
		}
	})
	return otelhttp.NewHandler(inner, "http.server", append(t.options(),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))...)
}

// Transport wraps base (nil: http.DefaultTransport) so that each request gets a client span and a
// traceparent header continuing the trace in the request's context. Give it to the peers client.
func (t *Tracing) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base, append(t.options(),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "peer " + r.Method }))...)
}
