package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"time"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/clientip"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Service serves the accounts routes of one node.
type Service struct {
	a     *feature.Deps
	cfg   Config
	pw    *hasher
	oauth *oauth.Service
	dir   *directory.Directory
}

var _ authn.APIKeyVerifier = (*Service)(nil)

// New returns the accounts service of a node. Zero optional fields of cfg take their defaults.
func New(a *feature.Deps, cfg Config) (*Service, error) {
	if a == nil || a.Pools == nil || a.IDs == nil || a.Peers == nil {
		return nil, errors.New("accounts: the app needs Pools, IDs and Peers")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Two hashes per core keep the CPU busy without queueing memory for more than that.
	pw, err := newHasher(*cfg.PasswordParams, 2*runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	s := &Service{a: a, cfg: cfg, pw: pw}
	s.dir = directory.New(a, s)
	s.oauth = oauth.New(a, oauth.Config{
		Providers: cfg.OAuth, StateKey: cfg.StateKey, RedirectBaseURL: cfg.RedirectBaseURL,
		HTTPClient: cfg.HTTPClient, TrustedProxies: cfg.TrustedProxies,
	}, oauthAccounts{s})
	return s, nil
}

func (s *Service) now() time.Time {
	if s.a.Now != nil {
		return s.a.Now().UTC()
	}
	return time.Now().UTC()
}

// Errors with a public face that several handlers return.
var (
	errInvalidCredentials = &apierror.Error{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: "the email or password is wrong"}
	errEmailTaken         = directory.ErrTaken
	errBadRefresh         = apierror.Unauthenticated("the refresh token is invalid, expired or revoked; log in again")
	errBadAPIKey          = apierror.Unauthenticated("invalid API key")
)

// reqMeta is what the audit log records about a request.
type reqMeta struct {
	IP        netip.Addr
	UserAgent string
}

// metaOf reads the client address the way the node's other rate limits do (clientip.Of): behind the
// trusted proxies (the edge routers), the last X-Forwarded-For hop they did not write; else the
// connection's peer. A client can prepend what it likes to X-Forwarded-For, but not move that hop.
func (s *Service) metaOf(r *http.Request) reqMeta {
	return reqMeta{IP: clientip.Of(r, s.cfg.TrustedProxies), UserAgent: r.UserAgent()}
}

// spend takes one event of key's failed-login budget, or answers 429 when it is gone. A limiter
// error (a bad limit, which Validate rules out) fails open: logging in must not depend on it.
func (s *Service) spend(ctx context.Context, key string) error {
	res, err := s.cfg.Limiter.Allow(ctx, "auth:login:"+key, s.cfg.LoginLimit)
	if err != nil {
		s.a.Log.Error("login rate limit", "err", err)
		return nil
	}
	if res.Allowed {
		return nil
	}
	e := apierror.RateLimited(res.RetryAfter)
	e.Header = http.Header{}
	ratelimit.SetHeaders(e.Header, res)
	return e
}

func (s *Service) resetBudget(ctx context.Context, key string) {
	if err := s.cfg.Limiter.Reset(ctx, "auth:login:"+key); err != nil {
		s.a.Log.Warn("login rate limit reset", "err", err)
	}
}

// regionOf returns the region that holds a user's data now (after any relocation), falling back to
// what the directory says when the topology cannot route the ID.
func (s *Service) regionOf(id shardkey.ID, fallback string) string {
	r, err := s.a.Pools.Route(id.KeyspaceID())
	if err != nil || r.Region == "" {
		return fallback
	}
	return r.Region
}

// peerError turns a failed call to another region into the answer for the client: the peer's own
// 4xx passes through; a peer that cannot be reached or fails is region_unavailable.
func peerError(ctx context.Context, region string, err error) error {
	var e *apierror.Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusMisdirectedRequest {
		return e
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &apierror.Error{Status: http.StatusServiceUnavailable, Code: "region_unavailable", RetryAfter: 5 * time.Second,
		Message: "the region " + region + ", which this request needs, is unavailable; retry later",
		Cause:   fmt.Errorf("peer %s: %w", region, err)}
}

// internalPath is where a peer serves one of this package's Internal routes.
func internalPath(p string) string { return "/api/v1" + p }
