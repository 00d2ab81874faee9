// Package server assembles the API node's HTTP handler from the routes feature packages declare: it
// mounts each under /api/v1 and the /api alias, enforces each route's access rule (authentication,
// roles, API-key scopes, the caller's certificate identity for internal routes) in one place, and wraps everything in the middleware chain.
package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/middleware"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/wire"
)

// Prefixes under which every route is served; the second is the original 8thDegree alias.
var Prefixes = []string{"/api/v1", "/api"}

// Options configure the handler.
type Options struct {
	Region string
	Log    *slog.Logger
	Auth   authn.Authenticator
	// Middleware runs inside request-ID, region, logging and recovery, outside routing (tracing, metrics,
	// CORS, the body limit). The router records the matched route's template for it (middleware.RecordRoute).
	Middleware []middleware.Middleware
	// RouteMiddleware runs for a matched route once its access rule has passed, just before the handler:
	// the principal of an authenticated route is in the context (authn.From), and so are the route's
	// name and access (middleware.RouteFrom). Per-user rate limits go here.
	RouteMiddleware []middleware.Middleware
	// Ops are extra handlers mounted at the root, outside /api (healthz, readyz, metrics).
	Ops map[string]http.Handler
}

// Handler returns the node's handler.
func Handler(routes []feature.Route, opts Options) (http.Handler, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := mux.NewRouter()
	r.NotFoundHandler = feature.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return apierror.NotFound("route")
	})
	r.MethodNotAllowedHandler = feature.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return apierror.MethodNotAllowed()
	})
	r.Use(middleware.RecordRoute)
	seen := map[string]string{}
	for _, rt := range routes {
		if err := check(rt); err != nil {
			return nil, err
		}
		key := rt.Method + " " + rt.Path
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("server: route %s declared twice (%s and %s)", key, prev, rt.Name)
		}
		seen[key] = rt.Name
		h := guard(rt, opts)
		for _, prefix := range Prefixes {
			for _, p := range variants(prefix + rt.Path) {
				r.Handle(p, h).Methods(rt.Method).Name(rt.Name + " " + p)
			}
		}
	}
	for path, h := range opts.Ops {
		r.Handle(path, h)
	}
	chain := append([]middleware.Middleware{
		middleware.RequestID(true),
		middleware.Region(opts.Region),
		middleware.Logging(opts.Log),
		middleware.Recover,
	}, opts.Middleware...)
	return middleware.Chain(r, chain...), nil
}

func check(rt feature.Route) error {
	switch {
	case rt.Name == "":
		return fmt.Errorf("server: route %s %s has no name", rt.Method, rt.Path)
	case rt.Handler == nil:
		return fmt.Errorf("server: route %s has no handler", rt.Name)
	case !strings.HasPrefix(rt.Path, "/"):
		return fmt.Errorf("server: route %s: path %q must start with /", rt.Name, rt.Path)
	case rt.Method == "":
		return fmt.Errorf("server: route %s has no method", rt.Name)
	case rt.Access == feature.Public && len(rt.Roles) > 0:
		return fmt.Errorf("server: route %s is public but names roles", rt.Name)
	case rt.Access == feature.Internal && (len(rt.Roles) > 0 || rt.Scope != ""):
		return fmt.Errorf("server: route %s is internal but names roles or a scope", rt.Name)
	}
	return nil
}

// variants serves "/jobs/" also as "/jobs", so clients need not guess the slash.
func variants(p string) []string {
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		return []string{p, strings.TrimSuffix(p, "/")}
	}
	return []string{p}
}

// guard enforces a route's access rule before its route middleware and handler run.
func guard(rt feature.Route, opts Options) http.Handler {
	inner := middleware.Chain(rt.Handler, opts.RouteMiddleware...)
	info := middleware.RouteInfo{Name: rt.Name, Access: rt.Access}
	return feature.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		switch rt.Access {
		case feature.Public:
			// A public route with a scope (reading reviews) needs no credentials, but an API key that
			// is presented must have the scope: a key scoped to other things reads nothing with it.
			if rt.Scope != "" && opts.Auth != nil && r.Header.Get("Authorization") != "" {
				p, err := opts.Auth.Authenticate(r)
				switch {
				case errors.Is(err, authn.ErrNoCredentials):
				case err != nil:
					return err
				case !p.HasScope(rt.Scope):
					return apierror.Forbidden("the API key lacks the scope " + rt.Scope)
				}
			}
		case feature.Internal:
			// Internal routes are for API nodes: the caller's identity is its verified client
			// certificate (internal/mtls). Without mutual TLS there is none, and the route is not
			// there; a router (or any other identity) is refused.
			id, ok := mtls.FromRequest(r)
			if !ok {
				return apierror.NotFound("route")
			}
			if !id.IsNode() {
				return apierror.Forbidden("internal routes are for API nodes; the caller is " + id.String())
			}
		case feature.Authenticated:
			if opts.Auth == nil {
				return apierror.Unauthenticated("authentication is not configured")
			}
			p, err := opts.Auth.Authenticate(r)
			if errors.Is(err, authn.ErrNoCredentials) {
				return apierror.Unauthenticated("an access token (Authorization: Bearer) or API key (Authorization: ApiKey) is required")
			}
			if err != nil {
				return err
			}
			if len(rt.Roles) > 0 && !slices.Contains(rt.Roles, p.Role) {
				return apierror.Forbidden(fmt.Sprintf("this operation is for the roles %s", roleList(rt.Roles)))
			}
			if p.Method == authn.MethodAPIKey {
				// The secret matched: the edge charges the key's rate-limit budget only on this word
				// (and drops the header), so a made-up secret with someone's key ID spends nothing of it.
				w.Header()[wire.KeyVerified] = []string{p.KeyID.String()}
			}
			if rt.Scope != "" && !p.HasScope(rt.Scope) {
				return apierror.Forbidden("the API key lacks the scope " + rt.Scope)
			}
			r = r.WithContext(authn.With(r.Context(), p))
		}
		inner.ServeHTTP(w, r.WithContext(middleware.WithRoute(r.Context(), info)))
		return nil
	})
}

func roleList(roles []authn.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
