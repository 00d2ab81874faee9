package middleware

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/clientip"
	"github.com/8thdegree/meridian/internal/ratelimit"
)

// RateLimitConfig sets the budgets of the rate limit middleware.
type RateLimitConfig struct {
	// User is the budget of an authenticated caller, keyed by user ID: all of a user's tokens and API
	// keys, on every node of the region, share it.
	User ratelimit.Limit
	// IP is the budget of an unauthenticated caller (public routes), keyed by client address; IPv6
	// addresses are grouped by /64, the block one subscriber usually has.
	IP ratelimit.Limit
	// Routes gives a route (by name) its own budget, spent apart from the general one, with the same key
	// (user or address): a tighter one for an expensive search, say.
	Routes map[string]ratelimit.Limit
	// KeyPrefix namespaces the Redis keys ("api"), so the edge router's budgets stay apart.
	KeyPrefix string
	// TrustedProxies are the addresses of the edge routers and load balancers whose X-Forwarded-For is
	// believed: the client is the right-most address in it that is not one of them. Empty: the peer
	// address of the connection is the client.
	TrustedProxies []netip.Prefix
	// Metrics, if set, counts refusals (meridian_http_rate_limited_total).
	Metrics *Metrics
}

// DefaultRateLimitConfig returns the node's defaults: 600 requests a minute per user with bursts of 100,
// and 120 a minute per address with bursts of 30 for anonymous callers.
func DefaultRateLimitConfig() RateLimitConfig {
	return RateLimitConfig{
		User:      ratelimit.Limit{Rate: 600, Period: time.Minute, Burst: 100},
		IP:        ratelimit.Limit{Rate: 120, Period: time.Minute, Burst: 30},
		KeyPrefix: "api",
	}
}

// Validate names the first bad budget.
func (c RateLimitConfig) Validate() error {
	if err := c.User.Validate(); err != nil {
		return fmt.Errorf("rate limits: User: %w", err)
	}
	if err := c.IP.Validate(); err != nil {
		return fmt.Errorf("rate limits: IP: %w", err)
	}
	for name, l := range c.Routes {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("rate limits: route %s: %w", name, err)
		}
	}
	if c.KeyPrefix == "" || strings.ContainsAny(c.KeyPrefix, " \t\r\n") {
		return fmt.Errorf("rate limits: KeyPrefix %q must be a non-empty word", c.KeyPrefix)
	}
	return nil
}

// Allower decides whether one more request fits a key's budget: *ratelimit.Limiter (one Redis call per
// request), or an admission.Limiter behind an adapter (a locally held share of the budget, settled with
// Redis in batches).
type Allower interface {
	Allow(ctx context.Context, key string, lim ratelimit.Limit) (ratelimit.Result, error)
}

// internal/ratelimit cannot import this package (it is api's internal), so its guard lives here.
var _ Allower = (*ratelimit.Limiter)(nil)

// RateLimit limits each caller: by user ID when the request is authenticated, else by client address.
// Every response of a limited route carries the RateLimit-* headers; a refused request gets 429
// rate_limited with Retry-After. Internal (node-to-node) routes are not limited: their callers are
// other nodes acting for users who were limited where they came in.
//
// It is route middleware (server.Options.RouteMiddleware), which runs after the route's access rule,
// when the principal is in the context. Call cfg.Validate at start: with a bad cfg every request fails
// with 500.
func RateLimit(l Allower, cfg RateLimitConfig) Middleware {
	cfgErr := cfg.Validate()
	return func(next http.Handler) http.Handler {
		return feature.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			if cfgErr != nil {
				return cfgErr
			}
			ri, _ := RouteFrom(r.Context())
			if ri.Access == feature.Internal {
				next.ServeHTTP(w, r)
				return nil
			}
			kind, who, lim := "ip", "", cfg.IP
			if p, ok := authn.From(r.Context()); ok && !p.UserID.IsZero() {
				kind, who, lim = "user", p.UserID.String(), cfg.User
			} else {
				who = clientip.LimitKey(clientip.Of(r, cfg.TrustedProxies))
			}
			scope := "all"
			if rl, ok := cfg.Routes[ri.Name]; ok && ri.Name != "" {
				scope, lim = ri.Name, rl
			}
			res, err := l.Allow(r.Context(), cfg.KeyPrefix+":"+scope+":"+kind+":"+who, lim)
			if err != nil {
				return err
			}
			ratelimit.SetHeaders(w.Header(), res)
			if !res.Allowed {
				cfg.Metrics.limited(routeTemplate(r), kind)
				return apierror.RateLimited(res.RetryAfter)
			}
			next.ServeHTTP(w, r)
			return nil
		})
	}
}
