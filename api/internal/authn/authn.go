// Package authn carries the authenticated caller (the principal) through a request and enforces who may
// call a route. Tokens and API keys are verified elsewhere (internal/accesstoken, the accounts package); this
// package only needs their answers.
package authn

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Role is a user's role.
type Role string

const (
	Client     Role = "client"
	Freelancer Role = "freelancer"
	Admin      Role = "admin"
	SRE        Role = "sre"
	Compliance Role = "compliance"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case Client, Freelancer, Admin, SRE, Compliance:
		return true
	}
	return false
}

// Method says how the caller authenticated.
type Method string

const (
	MethodJWT    Method = "jwt"
	MethodAPIKey Method = "api_key"
)

// Principal is the authenticated caller.
type Principal struct {
	UserID shardkey.ID
	// KSID is the user's keyspace ID now (after any relocation); routing uses it.
	KSID   shardkey.KeyspaceID
	Role   Role
	Region string
	Method Method
	// Scopes restrict an API key; empty for a token, which has the user's full rights.
	Scopes []string
	// KeyID is the API key's ID when Method is MethodAPIKey.
	KeyID shardkey.ID
	// EmailVerified says the user has proved their email (as of the token's issue, or now for an API
	// key); Can checks it.
	EmailVerified bool
	// AuthTime and Session are, for a token, the login it descends from (zero when it does not say).
	AuthTime time.Time
	Session  shardkey.ID
}

// HasScope reports whether the principal may use scope. Tokens have every scope.
func (p Principal) HasScope(scope string) bool {
	return p.Method != MethodAPIKey || slices.Contains(p.Scopes, scope)
}

type ctxKey struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal of the request, if it is authenticated.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// ErrNoCredentials is returned by an Authenticator when the request carries no Authorization header.
var ErrNoCredentials = errors.New("no credentials")

// Authenticator verifies a request's credentials (a bearer access token or an API key).
type Authenticator interface {
	// Authenticate returns the caller, ErrNoCredentials when there are none, or an *apierror.Error (401)
	// saying what is wrong with them.
	Authenticate(r *http.Request) (Principal, error)
}
