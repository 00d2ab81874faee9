package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/mailer"
	"github.com/8thdegree/meridian/api/internal/revocation"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/clientip"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/tokenissue"
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
	errSessionOver        = apierror.Unauthenticated("the session has reached its maximum lifetime; log in again")
	errLogoutAllWithKey   = apierror.Forbidden("log out everywhere needs an access token, not an API key")
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

// Login throttling counts failures, never successes (ratelimit.Backoff): a client address (its /64
// for IPv6, clientip.LimitKey) and an account each get a few free failures, then a wait that doubles
// with every further failure, up to a cap. A wait is answered 429 with Retry-After before the password
// is even looked at; once it is over the right password logs in and forgets the account's failures.
// Nobody is ever locked out for good, and a NAT's users spend nothing by logging in.
//
// Where the counts live: the account's in its home region's Redis, where the password is checked
// (a login taken by another region is forwarded there with the client's address), so that every
// region's attempts on one account share one count; the client's in the same place, together with
// the account it tried. Emails nobody has are counted like accounts in the region that took the
// request, so that the answers do not tell the two apart.
func loginIPKey(ip netip.Addr) string { return "auth:login:ip:" + clientip.LimitKey(ip) }

func loginAccountKey(h directory.Hash) string { return "auth:login:email:" + h.RateKey() }

// throttled answers 429 when the client or the account must still wait. A limiter error (a bad
// policy, which Validate rules out) fails open: logging in must not depend on it; Redis being down
// does not reach here, the limiter then counts per process (internal/ratelimit).
func (s *Service) throttled(ctx context.Context, ip netip.Addr, h directory.Hash) error {
	var wait time.Duration
	for _, k := range []struct {
		key string
		b   ratelimit.Backoff
	}{{loginIPKey(ip), s.cfg.IPBackoff}, {loginAccountKey(h), s.cfg.AccountBackoff}} {
		st, err := s.cfg.Limiter.Check(ctx, k.key, k.b)
		if err != nil {
			s.a.Log.Error("login throttle", "err", err)
			continue
		}
		wait = max(wait, st.RetryAfter)
	}
	if wait > 0 {
		return apierror.RateLimited(wait)
	}
	return nil
}

// failed counts a failed login of the client and the account.
func (s *Service) failed(ctx context.Context, ip netip.Addr, h directory.Hash) {
	if _, err := s.cfg.Limiter.Fail(ctx, loginIPKey(ip), s.cfg.IPBackoff); err != nil {
		s.a.Log.Error("login throttle", "err", err)
	}
	if _, err := s.cfg.Limiter.Fail(ctx, loginAccountKey(h), s.cfg.AccountBackoff); err != nil {
		s.a.Log.Error("login throttle", "err", err)
	}
}

// succeeded forgets the account's failures. The client's stay: logging in to an account of one's
// own must not buy more guesses at others.
func (s *Service) succeeded(ctx context.Context, h directory.Hash) {
	if err := s.cfg.Limiter.Forget(ctx, loginAccountKey(h)); err != nil {
		s.a.Log.Warn("login throttle reset", "err", err)
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

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Defaults.
const (
	DefaultRefreshTTL = 30 * 24 * time.Hour
	// DefaultSessionMaxAge is a session's absolute lifetime: however often its refresh token
	// rotates, the user logs in again after it.
	DefaultSessionMaxAge = 90 * 24 * time.Hour
	// minSecret is the shortest pepper or state key accepted: 128 bits.
	minSecret = 16
)

// Default login throttles: an account has 5 free failures, a client address 30 (a NAT's users share
// it); then waits of 1 s, 2 s, 4 s ... up to 15 minutes. Failures are forgotten an hour after the last.
var (
	DefaultAccountBackoff = ratelimit.Backoff{Free: 5, Base: time.Second, Max: 15 * time.Minute, Window: time.Hour}
	DefaultIPBackoff      = ratelimit.Backoff{Free: 30, Base: time.Second, Max: 15 * time.Minute, Window: time.Hour}
)

// DefaultPasswordParams are the argon2id costs of new hashes (OWASP's 19 MiB, 2 passes, 1 lane). They
// are stored in each hash, so raising them later rehashes users on their next login.
func DefaultPasswordParams() argon2id.Params {
	return argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}
}

// Revocations is told of sessions that ended, after their transaction committed
// (api/internal/revocation.Service).
type Revocations interface {
	Published(ctx context.Context, ended ...revocation.Entry)
}

// Config is what the accounts service needs.
type Config struct {
	// Tokens issues access tokens; its key set is published at /auth/jwks.json.
	Tokens *tokenissue.Issuer
	// EmailPepper keys the email hashes of the cross-region email directory. Every node of every region
	// must have the same pepper; changing it orphans every claim.
	EmailPepper []byte
	// StateKey signs the OAuth state cookie.
	StateKey []byte
	// RefreshTTL is the lifetime of a refresh token (each rotation starts a new one).
	RefreshTTL time.Duration
	// SessionMaxAge is a session's absolute lifetime, counted from the login (zero:
	// DefaultSessionMaxAge).
	SessionMaxAge time.Duration
	// Revocations learns of sessions that ended (nil: nobody; access tokens then live until they
	// expire).
	Revocations Revocations
	// Limiter counts failed logins.
	Limiter *ratelimit.Limiter
	// OAuth holds the configured providers by name (google, github); empty disables OAuth.
	OAuth map[string]oauth.ProviderConfig
	// RedirectBaseURL is the public base URL (the edge router's) that OAuth callbacks come back to:
	// <RedirectBaseURL>/api/v1/auth/oauth/<provider>/callback.
	RedirectBaseURL string

	// AccountBackoff and IPBackoff throttle failed logins per account and per client address (zero:
	// DefaultAccountBackoff, DefaultIPBackoff).
	AccountBackoff ratelimit.Backoff
	IPBackoff      ratelimit.Backoff
	// PasswordParams are the argon2id costs of new hashes (nil: DefaultPasswordParams).
	PasswordParams *argon2id.Params
	// HTTPClient calls OAuth providers (nil: a client with a 10 s timeout).
	HTTPClient *http.Client
	// TrustedProxies are the networks of the edge routers: their X-Forwarded-For names the client whose
	// failed logins are counted and audited. Without them the connection's peer is the client.
	TrustedProxies []netip.Prefix
	// Mailer sends the email verification links (required).
	Mailer mailer.Mailer
	// VerifyLinkURL is the page a verification mail links to, with ?token=<token> appended; the page
	// POSTs the token to /api/v1/auth/verify-email (default: <RedirectBaseURL>/verify-email).
	VerifyLinkURL string
	// VerifyTTL is how long a verification link works (default DefaultVerifyTTL).
	VerifyTTL time.Duration
	// ResendLimit is the budget of verification mails a user may ask for (default DefaultResendLimit).
	ResendLimit ratelimit.Limit
	// MailTimeout bounds handing one mail to the Mailer (default 10 s).
	MailTimeout time.Duration
	// DisableAPIKeys takes the API-key routes away (MERIDIAN_FEATURE_API_KEYS=false); the node then
	// also refuses "Authorization: ApiKey".
	DisableAPIKeys bool
}

// DefaultConfig returns a Config with the defaults filled in; the caller adds tokens, secrets and the
// limiter.
func DefaultConfig() Config {
	p := DefaultPasswordParams()
	return Config{RefreshTTL: DefaultRefreshTTL, SessionMaxAge: DefaultSessionMaxAge, AccountBackoff: DefaultAccountBackoff, IPBackoff: DefaultIPBackoff, PasswordParams: &p}
}

// withDefaults fills zero optional fields.
func (c Config) withDefaults() Config {
	if c.RefreshTTL == 0 {
		c.RefreshTTL = DefaultRefreshTTL
	}
	if c.SessionMaxAge == 0 {
		c.SessionMaxAge = DefaultSessionMaxAge
	}
	if c.AccountBackoff == (ratelimit.Backoff{}) {
		c.AccountBackoff = DefaultAccountBackoff
	}
	if c.IPBackoff == (ratelimit.Backoff{}) {
		c.IPBackoff = DefaultIPBackoff
	}
	if c.PasswordParams == nil {
		p := DefaultPasswordParams()
		c.PasswordParams = &p
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	c.RedirectBaseURL = strings.TrimRight(c.RedirectBaseURL, "/")
	if c.VerifyLinkURL == "" && c.RedirectBaseURL != "" {
		c.VerifyLinkURL = c.RedirectBaseURL + "/verify-email"
	}
	if c.VerifyTTL == 0 {
		c.VerifyTTL = DefaultVerifyTTL
	}
	if c.ResendLimit == (ratelimit.Limit{}) {
		c.ResendLimit = DefaultResendLimit
	}
	if c.MailTimeout == 0 {
		c.MailTimeout = 10 * time.Second
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Tokens == nil:
		return errors.New("accounts: Tokens is required")
	case len(c.EmailPepper) < minSecret:
		return fmt.Errorf("accounts: EmailPepper must be at least %d bytes", minSecret)
	case len(c.StateKey) < minSecret:
		return fmt.Errorf("accounts: StateKey must be at least %d bytes", minSecret)
	case c.RefreshTTL < time.Minute:
		return fmt.Errorf("accounts: RefreshTTL must be at least 1m, got %s", c.RefreshTTL)
	case c.SessionMaxAge < c.RefreshTTL:
		return fmt.Errorf("accounts: SessionMaxAge (%s) must be at least RefreshTTL (%s)", c.SessionMaxAge, c.RefreshTTL)
	case c.Limiter == nil:
		return errors.New("accounts: Limiter is required")
	case c.Mailer == nil:
		return errors.New("accounts: Mailer is required (verification links)")
	case !httpURL(c.RedirectBaseURL):
		return fmt.Errorf("accounts: RedirectBaseURL must be an http(s) URL (OAuth callbacks, verification mail), got %q", c.RedirectBaseURL)
	case c.VerifyLinkURL != "" && !httpURL(c.VerifyLinkURL):
		return fmt.Errorf("accounts: VerifyLinkURL must be an http(s) URL, got %q", c.VerifyLinkURL)
	case c.VerifyTTL != 0 && c.VerifyTTL < time.Minute:
		return fmt.Errorf("accounts: VerifyTTL must be at least 1m, got %s", c.VerifyTTL)
	case c.MailTimeout < 0:
		return errors.New("accounts: MailTimeout must be positive")
	}
	if c.ResendLimit != (ratelimit.Limit{}) {
		if err := c.ResendLimit.Validate(); err != nil {
			return fmt.Errorf("accounts: ResendLimit: %w", err)
		}
	}
	if c.AccountBackoff != (ratelimit.Backoff{}) {
		if err := c.AccountBackoff.Validate(); err != nil {
			return fmt.Errorf("accounts: AccountBackoff: %w", err)
		}
	}
	if c.IPBackoff != (ratelimit.Backoff{}) {
		if err := c.IPBackoff.Validate(); err != nil {
			return fmt.Errorf("accounts: IPBackoff: %w", err)
		}
	}
	if p := c.PasswordParams; p != nil {
		if p.Memory < 8*1024 || p.Iterations < 1 || p.Parallelism < 1 || p.SaltLength < 16 || p.KeyLength < 16 {
			return errors.New("accounts: PasswordParams are below the floor (8 MiB, 1 pass, 1 lane, 16-byte salt and key)")
		}
	}
	if len(c.OAuth) > 0 && !httpURL(c.RedirectBaseURL) {
		return fmt.Errorf("accounts: RedirectBaseURL must be an http(s) URL when OAuth is configured, got %q", c.RedirectBaseURL)
	}
	if err := oauth.ValidateProviders(c.OAuth); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	return nil
}
