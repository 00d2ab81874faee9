package oauth

import (
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
)

// Linking a provider to an existing account. A sign-in whose (provider, subject) is linked to nobody,
// but whose verified email an account already holds, links nothing and signs nobody in: it answers
// 409 account_exists with a link token, the provider's identity sealed with the state key for LinkTTL.
// The account's owner then proves they hold the account (its access token, and its password if it
// has one) and POSTs the token to /auth/oauth/{provider}/link; the accounts core links the identity
// only to a verified account whose email is the one the provider vouched for. So an attacker who
// registered the victim's address first gets nothing: the account is unverified, the victim's browser
// holds the token, and only the account's password holder can spend it.
const (
	// LinkTTL is how long a link token works.
	LinkTTL     = 10 * time.Minute
	linkDomain  = "meridian/oauth-link/v1\x00"
	maxLinkText = 2048
)

// linkClaims is what a link token proves: the provider vouched for this identity at the callback.
type linkClaims struct {
	Provider string `json:"p"`
	Subject  string `json:"s"`
	Email    string `json:"m"`
	Expires  int64  `json:"e"`
}

// ErrAccountExists's code is the callback's answer when the email belongs to an account that this
// identity is not linked to.
const codeAccountExists = "account_exists"

func (s *Service) accountExists(id Identity) error {
	tok, err := seal(s.cfg.StateKey, linkDomain, linkClaims{Provider: id.Provider, Subject: id.Subject, Email: id.Email, Expires: s.now().Add(LinkTTL).Unix()})
	if err != nil {
		return err
	}
	e := apierror.Conflict(codeAccountExists, "an account with this email already exists and is not linked to this "+id.Provider+
		" sign-in; log in to it (with its password, or the sign-in it already uses) and POST the link_token to link_url within "+
		LinkTTL.String()+" to link them")
	e.Details = map[string]any{
		"provider":   id.Provider,
		"link_token": tok,
		"link_url":   "/api/v1/auth/oauth/" + id.Provider + "/link",
		"expires_in": int64(LinkTTL / time.Second),
	}
	return e
}

func (s *Service) openLink(tok string) (Identity, error) {
	var c linkClaims
	if err := unseal(s.cfg.StateKey, linkDomain, tok, maxLinkText, &c); err != nil || c.Provider == "" || c.Subject == "" || c.Email == "" {
		return Identity{}, errBadLink
	}
	if s.now().Unix() >= c.Expires {
		return Identity{}, errBadLink
	}
	return Identity{Provider: c.Provider, Subject: c.Subject, Email: c.Email}, nil
}

var errBadLink = &apierror.Error{Status: http.StatusBadRequest, Code: "invalid_link_token",
	Message: "the link token is invalid or expired; sign in with the provider again to get a new one"}

// linkRequest is the body of POST /auth/oauth/{provider}/link.
type linkRequest struct {
	LinkToken string `json:"link_token"`
	// Password is the account's password; required when the account has one.
	Password string `json:"password,omitempty"`
}

var _ rest.Validator = (*linkRequest)(nil)

func (r *linkRequest) Validate() map[string]string {
	f := map[string]string{}
	if r.LinkToken == "" || len(r.LinkToken) > maxLinkText {
		f["link_token"] = "is required"
	}
	if len(r.Password) > 1024 {
		f["password"] = "is too long"
	}
	return f
}

// HandleLink serves POST /auth/oauth/{provider}/link for the caller's own account.
func (s *Service) HandleLink(w http.ResponseWriter, r *http.Request) error {
	name := mux.Vars(r)["provider"]
	if _, ok := s.providers[name]; !ok {
		return apierror.NotFound("OAuth provider")
	}
	var req linkRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	id, err := s.openLink(req.LinkToken)
	if err != nil {
		return err
	}
	if id.Provider != name {
		return errBadLink.WithCause(errors.New("the link token is for another provider"))
	}
	if err := s.accounts.Link(r.Context(), feature.Caller(r), id, req.Password, s.metaOf(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
