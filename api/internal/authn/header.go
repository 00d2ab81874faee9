package authn

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/apierror"
)

// APIKeyVerifier checks an API key (the accounts feature implements it).
type APIKeyVerifier interface {
	VerifyAPIKey(ctx context.Context, key string) (Principal, error)
}

// HeaderAuthenticator reads the Authorization header: "Bearer <access token>" or "ApiKey <key>".
type HeaderAuthenticator struct {
	Verifier *accesstoken.Verifier
	APIKeys  APIKeyVerifier
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
		return Principal{UserID: s.UserID, KSID: s.KSID, Role: role, Region: s.Region, Method: MethodJWT, AuthTime: s.AuthTime, Session: s.Session}, nil
	case "apikey":
		if h.APIKeys == nil {
			return Principal{}, apierror.Unauthenticated("API keys are not enabled")
		}
		return h.APIKeys.VerifyAPIKey(r.Context(), cred)
	}
	return Principal{}, apierror.Unauthenticated("unsupported Authorization scheme " + scheme + " (use Bearer or ApiKey)")
}
