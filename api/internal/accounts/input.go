package accounts

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/richtext"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Field limits (docs/schema.md).
const (
	maxName       = 200
	maxKeyName    = 100
	maxRegionName = 64
)

// API-key scopes. A key may do only what its scopes allow; an access token may do everything its
// user may.
const (
	ScopeProfileRead   = "profile:read"
	ScopeProfileWrite  = "profile:write"
	ScopeJobsRead      = "jobs:read"
	ScopeJobsWrite     = "jobs:write"
	ScopeReviewsRead   = "reviews:read"
	ScopeReviewsWrite  = "reviews:write"
	ScopeMatchingRead  = "matching:read"
	ScopeHiringRead    = "hiring:read"
	ScopeHiringWrite   = "hiring:write"
	scopeListForErrors = "profile:read, profile:write, jobs:read, jobs:write, reviews:read, reviews:write, matching:read, hiring:read, hiring:write"
)

// Scopes returns every API-key scope, in a stable order.
func Scopes() []string {
	return []string{ScopeProfileRead, ScopeProfileWrite, ScopeJobsRead, ScopeJobsWrite, ScopeReviewsRead, ScopeReviewsWrite, ScopeMatchingRead,
		ScopeHiringRead, ScopeHiringWrite}
}

// The request bodies check themselves when rest decodes them: a Validate method that stopped matching
// rest.Validator would silently switch their checks off.
var (
	_ rest.Validator = (*registerRequest)(nil)
	_ rest.Validator = (*loginRequest)(nil)
	_ rest.Validator = (*refreshRequest)(nil)
	_ rest.Validator = (*apiKeyRequest)(nil)
	_ rest.Validator = (*internalLoginRequest)(nil)
)

// registerRequest is the body of POST /auth/register.
type registerRequest struct {
	Email    string     `json:"email"`
	Password string     `json:"password"`
	Name     string     `json:"name"`
	Role     authn.Role `json:"role"`
	// Region is the home region the user chooses; empty means this node's region.
	Region string `json:"region,omitempty"`
}

func (r *registerRequest) Validate() map[string]string {
	f := map[string]string{}
	r.Email = directory.NormalizeEmail(r.Email)
	if p := directory.EmailProblem(r.Email); p != "" {
		f["email"] = p
	}
	if p := passwordProblem(r.Password); p != "" {
		f["password"] = p
	}
	r.Name = strings.TrimSpace(r.Name)
	if p := nameProblem(r.Name, maxName); p != "" {
		f["name"] = p
	}
	if r.Role != authn.Client && r.Role != authn.Freelancer {
		f["role"] = "must be client or freelancer"
	}
	r.Region = strings.TrimSpace(r.Region)
	if len(r.Region) > maxRegionName {
		f["region"] = "is not a region"
	}
	return f
}

func passwordProblem(pw string) string {
	switch n := utf8.RuneCountInString(pw); {
	case !utf8.ValidString(pw):
		return "must be valid UTF-8"
	case n < minPassword:
		return fmt.Sprintf("must be at least %d characters", minPassword)
	case n > maxPassword:
		return fmt.Sprintf("must be at most %d characters", maxPassword)
	}
	return ""
}

func nameProblem(name string, limit int) string {
	switch {
	case name == "":
		return "is required"
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(name) > limit:
		return fmt.Sprintf("must be at most %d characters", limit)
	case strings.ContainsFunc(name, unicode.IsControl):
		return "must not contain control characters"
	case richtext.HasMarkup(name):
		return richtext.PlainTextProblem
	}
	return ""
}

// loginRequest is the body of POST /auth/login. Only presence and size are checked: a malformed
// email is simply one nobody has, and gets the same 401 as a wrong password.
type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (r *loginRequest) Validate() map[string]string {
	f := map[string]string{}
	r.Email = directory.NormalizeEmail(r.Email)
	switch {
	case r.Email == "":
		f["email"] = "is required"
	case len(r.Email) > directory.MaxEmail:
		f["email"] = fmt.Sprintf("must be at most %d bytes", directory.MaxEmail)
	}
	switch {
	case r.Password == "":
		f["password"] = "is required"
	case utf8.RuneCountInString(r.Password) > maxPassword:
		f["password"] = fmt.Sprintf("must be at most %d characters", maxPassword)
	}
	return f
}

// refreshRequest is the body of POST /auth/refresh and POST /auth/logout.
type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
	family       shardkey.ID
}

func (r *refreshRequest) Validate() map[string]string {
	if r.RefreshToken == "" {
		return map[string]string{"refresh_token": "is required"}
	}
	id, err := parseRefreshToken(r.RefreshToken)
	if err != nil {
		return map[string]string{"refresh_token": "is not a refresh token"}
	}
	r.family = id
	return nil
}

// apiKeyRequest is the body of POST /auth/api-keys.
type apiKeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// ExpiresAt, when given, is when the key stops working (at most a year ahead).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Password re-authenticates a session whose login is older than reauthWindow.
	Password string `json:"password,omitempty"`
}

func (r *apiKeyRequest) Validate() map[string]string {
	f := map[string]string{}
	r.Name = strings.TrimSpace(r.Name)
	if p := nameProblem(r.Name, maxKeyName); p != "" {
		f["name"] = p
	}
	if len(r.Password) > maxPassword*4 { // bytes: maxPassword characters of up to 4 bytes
		f["password"] = fmt.Sprintf("must be at most %d characters", maxPassword)
	}
	all := Scopes()
	switch {
	case len(r.Scopes) == 0:
		f["scopes"] = "must name at least one of " + scopeListForErrors
	case len(r.Scopes) > len(all):
		f["scopes"] = fmt.Sprintf("must name at most %d scopes", len(all))
	default:
		for i, s := range r.Scopes {
			if !slices.Contains(all, s) {
				f[fmt.Sprintf("scopes.%d", i)] = "must be one of " + scopeListForErrors
			} else if slices.Index(r.Scopes, s) != i {
				f[fmt.Sprintf("scopes.%d", i)] = "is repeated"
			}
		}
	}
	return f
}

// The answers.

type userJSON struct {
	ID    shardkey.ID `json:"id"`
	Email string      `json:"email"`
	// EmailVerified: the user proved the email; until then the account may not create API keys,
	// post jobs or reviews, apply or link a sign-in provider.
	EmailVerified bool       `json:"email_verified"`
	Name          string     `json:"name"`
	Role          authn.Role `json:"role"`
	Region        string     `json:"region"`
	CreatedAt     time.Time  `json:"created_at"`
}

type tokenBundle struct {
	User         *userJSON `json:"user"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	TokenType    string    `json:"token_type"`
	ExpiresIn    int64     `json:"expires_in"`
}

type apiKeyJSON struct {
	ID         shardkey.ID `json:"id"`
	Name       string      `json:"name"`
	Scopes     []string    `json:"scopes"`
	Prefix     string      `json:"prefix"`
	CreatedAt  time.Time   `json:"created_at"`
	LastUsedAt *time.Time  `json:"last_used_at,omitempty"`
	ExpiresAt  *time.Time  `json:"expires_at,omitempty"`
}

type apiKeyCreated struct {
	apiKeyJSON
	// Key is shown once, in the answer to its creation.
	Key string `json:"key"`
}

// internalLoginRequest is a login forwarded to the user's home region by the node that took it.
type internalLoginRequest struct {
	UserID    shardkey.ID `json:"user_id"`
	Email     string      `json:"email"`
	Password  string      `json:"password"`
	IP        netip.Addr  `json:"ip,omitzero"`
	UserAgent string      `json:"user_agent,omitempty"`
}

func (r *internalLoginRequest) Validate() map[string]string {
	f := (&loginRequest{Email: r.Email, Password: r.Password}).Validate()
	if r.UserID.Kind() != shardkey.KindUser {
		f["user_id"] = "must be a user ID"
	}
	return f
}

// internalLoginAnswer carries the outcome in a 200 so that a 429's retry time survives the hop.
type internalLoginAnswer struct {
	Outcome      string       `json:"outcome"`
	RetryAfterMS int64        `json:"retry_after_ms,omitempty"`
	Bundle       *tokenBundle `json:"bundle,omitempty"`
	// RateLimit holds the home region's RateLimit-* headers of a refusal, so that the region that took
	// the request answers with exactly the headers of a local refusal.
	RateLimit map[string]string `json:"rate_limit,omitempty"`
}

// rateLimitHeaders are the headers of a refusal that a forwarded login carries back.
var rateLimitHeaders = []string{ratelimit.HeaderLimit, ratelimit.HeaderRemaining, ratelimit.HeaderReset, ratelimit.HeaderPolicy}

// The outcomes of a forwarded login.
const (
	outcomeOK      = "ok"
	outcomeInvalid = "invalid_credentials"
	outcomeLimited = "rate_limited"
)
