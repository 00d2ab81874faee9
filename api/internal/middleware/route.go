package middleware

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/8thdegree/meridian/api/internal/feature"
)

// The route template a request matched is known only inside the router, but the access log, the
// metrics and the trace span are written outside it. The outermost of them puts an empty slot in the
// request's context; RecordRoute, which the server installs on its router, fills it in; they read it
// once the handler has returned.
type routeSlot struct{ template string }

type slotKey struct{}

// withSlot returns r carrying a route slot, reusing one an outer middleware made.
func withSlot(r *http.Request) (*http.Request, *routeSlot) {
	if s, ok := r.Context().Value(slotKey{}).(*routeSlot); ok {
		return r, s
	}
	s := &routeSlot{}
	return r.WithContext(context.WithValue(r.Context(), slotKey{}, s)), s
}

// label is the route's metrics label: its template, or "unmatched" for requests no route took (404,
// 405, CORS preflights), so that clients cannot mint label values with made-up paths.
func (s *routeSlot) label() string {
	if s.template == "" {
		return "unmatched"
	}
	return s.template
}

// RecordRoute is a gorilla/mux middleware (Router.Use) that records the matched route's path template
// ("/api/v1/jobs/{id}") for the metrics, tracing and logging middleware outside the router.
func RecordRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, ok := r.Context().Value(slotKey{}).(*routeSlot); ok {
			if cr := mux.CurrentRoute(r); cr != nil {
				if t, err := cr.GetPathTemplate(); err == nil {
					s.template = t
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// RouteInfo is what route-level middleware (server.Options.RouteMiddleware) knows of the route it runs for.
type RouteInfo struct {
	// Name is the route's name (its OpenAPI operationId).
	Name   string
	Access feature.Access
}

type routeInfoKey struct{}

// WithRoute returns ctx carrying the route being served; the server sets it before route middleware runs.
func WithRoute(ctx context.Context, ri RouteInfo) context.Context {
	return context.WithValue(ctx, routeInfoKey{}, ri)
}

// RouteFrom returns the route being served, if the server recorded one.
func RouteFrom(ctx context.Context) (RouteInfo, bool) {
	ri, ok := ctx.Value(routeInfoKey{}).(RouteInfo)
	return ri, ok
}

// routeTemplate returns the path template of the route serving r, or "".
func routeTemplate(r *http.Request) string {
	if cr := mux.CurrentRoute(r); cr != nil {
		if t, err := cr.GetPathTemplate(); err == nil {
			return t
		}
	}
	return ""
}
