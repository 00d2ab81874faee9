// Package middleware holds the API node's HTTP middleware: request IDs, access logs, panic recovery, the region
// header on every response, Prometheus metrics and OpenTelemetry tracing per route template, CORS, the
// body size limit, and per-user and per-IP rate limits.
//
// Most of it wraps the whole handler (server.Options.Middleware). Rate limits are route middleware
// (server.Options.RouteMiddleware): they run after the route's access rule, when the caller is known.
package middleware

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/requestid"
	"github.com/8thdegree/meridian/internal/wire"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Chain applies ms so that the first is outermost.
func Chain(h http.Handler, ms ...Middleware) http.Handler {
	for i := len(ms) - 1; i >= 0; i-- {
		h = ms[i](h)
	}
	return h
}

// RequestID takes the router's request ID when trustIncoming and it is well-formed, else makes one,
// and echoes it (see internal/requestid).
func RequestID(trustIncoming bool) Middleware { return requestid.Middleware(trustIncoming) }

// Region sets X-Meridian-Region on every response.
func Region(name string) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(wire.Region, name)
			next.ServeHTTP(w, r)
		})
	}
}

// StatusRecorder remembers the status and size of a response.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Logging writes one structured access-log line per request and gives handlers a request-scoped logger.
func Logging(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			l := log.With("request_id", requestid.From(r.Context()))
			rec := &StatusRecorder{ResponseWriter: w}
			r, slot := withSlot(r)
			next.ServeHTTP(rec, r.WithContext(rest.WithLogger(r.Context(), l)))
			if rec.Status == 0 {
				rec.Status = http.StatusOK
			}
			// Consul checks /readyz every second: successful probes are logged at debug, not to drown the log.
			level := slog.LevelInfo
			if (r.URL.Path == "/readyz" || r.URL.Path == "/healthz") && rec.Status == http.StatusOK {
				level = slog.LevelDebug
			}
			l.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "route", slot.template, "status", rec.Status, "bytes", rec.Bytes,
				"duration_ms", float64(time.Since(start).Microseconds())/1000)
		})
	}
}

// Recover turns a panic in a handler into a 500 JSON error and logs the stack; no panic reaches a client.
func Recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(p)
				}
				rest.Logger(r.Context()).Error("panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				rest.WriteError(w, r, fmt.Errorf("panic: %v", p))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
