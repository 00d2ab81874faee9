package authn

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// APIKeyVerifier checks an API key (the accounts feature implements it).
type APIKeyVerifier interface {
	VerifyAPIKey(ctx context.Context, key string) (Principal, error)
}

// HeaderAuthenticator reads the Authorization header: "Bearer <access token>" or "ApiKey <key>".
type HeaderAuthenticator struct {
	Verifier *accesstoken.Verifier
	APIKeys  APIKeyVerifier
	// Revoked reports a session that has ended (api/internal/revocation); nil checks nothing.
	Revoked func(family shardkey.ID) bool
}

// errSessionEnded answers a token whose session was ended (logout, log out everywhere, refresh-token
// reuse). Its wire.TokenRevoked header tells the edge router to refuse the token itself from then on.
func errSessionEnded() *apierror.Error {
	e := apierror.Unauthenticated("the session of this access token has ended; log in again")
	e.Header = http.Header{wire.TokenRevoked: []string{"1"}}
	return e
}

var _ Authenticator = (*HeaderAuthenticator)(nil)

// Authenticate implements Authenticator.
func (h *HeaderAuthenticator) Authenticate(r *http.Request) (Principal, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return Principal{}, ErrNoCredentials
	}
	scheme, cred, ok := strings.Cut(auth, " ")
	cred = strings.TrimSpace(cred)
	if !ok || cred == "" {
		return Principal{}, apierror.Unauthenticated("malformed Authorization header")
	}
	switch strings.ToLower(scheme) {
	case "bearer":
		s, err := h.Verifier.Verify(cred)
		if errors.Is(err, accesstoken.ErrExpired) {
			return Principal{}, apierror.Unauthenticated("the access token has expired").WithCause(err)
		}
		if err != nil {
			return Principal{}, apierror.Unauthenticated("invalid access token").WithCause(err)
		}
		role := Role(s.Role)
		if !role.Valid() {
			return Principal{}, apierror.Unauthenticated("invalid access token")
		}
		if h.Revoked != nil && h.Revoked(s.Session) {
			return Principal{}, errSessionEnded()
		}
		return Principal{UserID: s.UserID, KSID: s.KSID, Role: role, Region: s.Region, Method: MethodJWT, AuthTime: s.AuthTime, Session: s.Session, EmailVerified: s.EmailVerified}, nil
	case "apikey":
		if h.APIKeys == nil {
			return Principal{}, apierror.Unauthenticated("API keys are not enabled")
		}
		return h.APIKeys.VerifyAPIKey(r.Context(), cred)
	}
	return Principal{}, apierror.Unauthenticated("unsupported Authorization scheme " + scheme + " (use Bearer or ApiKey)")
}
