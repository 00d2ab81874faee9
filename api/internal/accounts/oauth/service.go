package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Accounts is what the OAuth flow needs from the accounts core, which implements it. A session is
// the token bundle a sign-in answers with; this package only writes it out as JSON.
type Accounts interface {
	// FindIdentity asks the cross-region directory which user a (provider, subject) is linked to, and
	// returns the region that holds that user's data now.
	FindIdentity(ctx context.Context, provider, subject string) (user shardkey.ID, home string, found bool, err error)
	// FindUser asks the cross-region email directory who holds a normalised email, and returns the
	// region that holds that user's data now.
	FindUser(ctx context.Context, email string) (user shardkey.ID, home string, found bool, err error)
	// SignIn opens a session for user, whose data is in this region, if the identity is linked to
	// them. It never links: ErrNoUser if the user does not exist or is deleted, ErrNotLinked if the
	// identity is not theirs.
	SignIn(ctx context.Context, user shardkey.ID, id Identity, m Meta) (session any, err error)
	// CreateUser creates a user homed in this region with the identity linked and the email verified
	// (the provider verified it), and opens a session. An email or identity another user holds is an
	// *apierror.Error with directory.ErrTaken's code.
	CreateUser(ctx context.Context, id Identity, role authn.Role, m Meta) (session any, err error)
	// Link links the identity to the caller's own account, which must be verified and hold the
	// identity's email; password must be the account's, if it has one.
	Link(ctx context.Context, caller authn.Principal, id Identity, password string, m Meta) error
}

// Errors of Accounts.SignIn: nobody to sign in, or an account this identity is not linked to.
var (
	ErrNoUser    = errors.New("oauth: no such user")
	ErrNotLinked = errors.New("oauth: the identity is not linked to the user")
)

// Identity is a user as a provider vouches for them: a verified email and a stable subject.
type Identity struct {
	Provider string
	Subject  string
	Email    string // normalised (directory.NormalizeEmail)
	// Name is what the provider calls the user, unchecked; the accounts core makes a valid name of it.
	Name string
}

// Meta is what the audit log records about the request that signs someone in.
type Meta struct {
	IP        netip.Addr
	UserAgent string
}

// Config is what the OAuth flow needs from the node.
type Config struct {
	// Providers are the configured providers by name (google, github); empty disables OAuth (every
	// provider is then not found).
	Providers map[string]ProviderConfig
	// StateKey signs the state cookie.
	StateKey []byte
	// RedirectBaseURL is the public base URL (the edge router's) that callbacks come back to:
	// <RedirectBaseURL>/api/v1/auth/oauth/<provider>/callback. https makes the cookie Secure.
	RedirectBaseURL string
	// HTTPClient calls the providers.
	HTTPClient *http.Client
	// TrustedProxies are the networks of the edge routers, whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
}

// ValidateProviders names the first bad provider configuration, as a field of the caller's config
// (OAuth["google"].ClientID).
func ValidateProviders(providers map[string]ProviderConfig) error {
	names := make([]string, 0, len(providers))
	for name := range providers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := providers[name].validate(name); err != nil {
			return err
		}
	}
	return nil
}

// Service is one node's side of OAuth sign-in.
type Service struct {
	a         *feature.Deps
	cfg       Config
	accounts  Accounts
	providers map[string]*provider
}

// New returns the OAuth flow of a node; cfg has been validated (ValidateProviders) by the caller.
func New(a *feature.Deps, cfg Config, accounts Accounts) *Service {
	cfg.RedirectBaseURL = strings.TrimRight(cfg.RedirectBaseURL, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Service{a: a, cfg: cfg, accounts: accounts, providers: map[string]*provider{}}
	for name, pc := range cfg.Providers {
		s.providers[name] = newProvider(name, pc, cfg.RedirectBaseURL, cfg.HTTPClient, a.Now)
	}
	return s
}

func (s *Service) now() time.Time {
	if s.a.Now != nil {
		return s.a.Now().UTC()
	}
	return time.Now().UTC()
}
