package oauth

import (
	"net/netip"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// maxSubject is the longest provider subject accepted (auth.oauth_identities.subject).
const maxSubject = 255

// The body checks itself when rest decodes it.
var _ rest.Validator = (*internalLoginRequest)(nil)

// internalLoginRequest is an OAuth sign-in forwarded to the user's home region (the
// InternalOAuthRequest schema of the accounts routes).
type internalLoginRequest struct {
	UserID    shardkey.ID `json:"user_id"`
	Provider  string      `json:"provider"`
	Subject   string      `json:"subject"`
	Email     string      `json:"email"`
	IP        netip.Addr  `json:"ip,omitzero"`
	UserAgent string      `json:"user_agent,omitempty"`
	// The provider's proof (Proof): the ID token for google, the access token for github.
	IDToken     string `json:"id_token,omitempty"`
	AccessToken string `json:"access_token,omitempty"`
}

// Bounds of the proof's fields (an ID token is a few KiB at most; GitHub's tokens are under 256 bytes).
const (
	maxIDToken     = 16 << 10
	maxAccessToken = 4 << 10
)

func (r *internalLoginRequest) Validate() map[string]string {
	f := map[string]string{}
	if r.UserID.Kind() != shardkey.KindUser {
		f["user_id"] = "must be a user ID"
	}
	if r.Provider != ProviderGoogle && r.Provider != ProviderGitHub {
		f["provider"] = "must be google or github"
	}
	if r.Subject == "" || len(r.Subject) > maxSubject {
		f["subject"] = "must be 1 to 255 bytes"
	}
	r.Email = directory.NormalizeEmail(r.Email)
	if p := directory.EmailProblem(r.Email); p != "" {
		f["email"] = p
	}
	if len(r.IDToken) > maxIDToken {
		f["id_token"] = "is too long"
	}
	if len(r.AccessToken) > maxAccessToken {
		f["access_token"] = "is too long"
	}
	return f
}
