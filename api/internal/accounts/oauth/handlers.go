package oauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gorilla/mux"
	"golang.org/x/oauth2"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/clientip"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

var (
	errProviderDown = &apierror.Error{Status: http.StatusBadGateway, Code: "provider_unavailable", Message: "the sign-in provider did not answer properly; retry later"}
	errNoSignIn     = apierror.BadRequest("no OAuth sign-in is in progress in this browser, or it expired; start again")
	errStateMatch   = apierror.BadRequest("the OAuth state does not match the sign-in this browser started; start again")
)

func (s *Service) provider(r *http.Request) (*provider, error) {
	p, ok := s.providers[mux.Vars(r)["provider"]]
	if !ok {
		return nil, apierror.NotFound("OAuth provider")
	}
	return p, nil
}

func randomText(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (s *Service) cookiePath(p *provider) string { return "/api/v1/auth/oauth/" + p.name }

// metaOf reads the client address the way the node's other rate limits do (clientip.Of).
func (s *Service) metaOf(r *http.Request) Meta {
	return Meta{IP: clientip.Of(r, s.cfg.TrustedProxies), UserAgent: r.UserAgent()}
}

// HandleStart serves GET /auth/oauth/{provider}: it sends the browser to the provider with a fresh
// state, PKCE challenge (S256) and, for OIDC, nonce, all three remembered in the signed cookie.
func (s *Service) HandleStart(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provider(r)
	if err != nil {
		return err
	}
	role := authn.Freelancer
	if q := r.URL.Query().Get("role"); q != "" {
		role = authn.Role(q)
		if role != authn.Client && role != authn.Freelancer {
			return apierror.Invalid(map[string]string{"role": "must be client or freelancer"})
		}
	}
	state, err := randomText(32)
	if err != nil {
		return err
	}
	nonce, err := randomText(32)
	if err != nil {
		return err
	}
	st := oauthState{Provider: p.name, State: state, Verifier: oauth2.GenerateVerifier(), Role: role, Expires: s.now().Add(StateTTL).Unix()}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier)}
	if p.verifier != nil {
		st.Nonce = nonce
		opts = append(opts, oidc.Nonce(nonce))
	}
	sealed, err := sealState(s.cfg.StateKey, st)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: StateCookie, Value: sealed, Path: s.cookiePath(p), MaxAge: int(StateTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(s.cfg.RedirectBaseURL, "https://"),
		// Lax: the provider's redirect back is a top-level cross-site GET, which Lax lets through.
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", p.conf.AuthCodeURL(state, opts...))
	w.WriteHeader(http.StatusFound)
	return nil
}

// HandleCallback serves GET /auth/oauth/{provider}/callback and finishes the flow: it checks the
// state against the cookie, exchanges the code with the PKCE verifier, gets a verified email, and
// signs the user in (creating them if needed).
func (s *Service) HandleCallback(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provider(r)
	if err != nil {
		return err
	}
	// The cookie is single-use whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: StateCookie, Value: "", Path: s.cookiePath(p), MaxAge: -1, HttpOnly: true,
		Secure: strings.HasPrefix(s.cfg.RedirectBaseURL, "https://"), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	ck, err := r.Cookie(StateCookie)
	if err != nil {
		return errNoSignIn
	}
	st, err := openState(s.cfg.StateKey, ck.Value, s.now())
	if err != nil {
		return errNoSignIn.WithCause(err)
	}
	q := r.URL.Query()
	if st.Provider != p.name || subtle.ConstantTimeCompare([]byte(st.State), []byte(q.Get("state"))) != 1 {
		return errStateMatch
	}
	if e := q.Get("error"); e != "" {
		return apierror.Unauthenticated("the provider did not authorise the sign-in").WithCause(fmt.Errorf("provider error %q", e))
	}
	code := q.Get("code")
	if code == "" {
		return apierror.Invalid(map[string]string{"code": "is required"})
	}
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, p.client)
	tok, err := p.conf.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
		return apierror.Unauthenticated("the provider refused the authorisation code").WithCause(err)
	}
	if err != nil {
		return errProviderDown.WithCause(err)
	}
	proof := p.proofOf(tok)
	id, err := p.identify(ctx, proof, st.Nonce, true)
	if err != nil {
		return err
	}
	b, created, err := s.signIn(r.Context(), id, proof, st.Role, s.metaOf(r))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	rest.WriteJSON(w, status, b)
	return nil
}

// signIn signs the identity in, wherever its user lives, or creates a user for it in this region.
// created says which. proof goes with a sign-in forwarded to another region, which checks it itself. The identity, (provider, subject), decides who signs in, never the email alone:
//
//  1. the user the identity is linked to (the directory's identity claim) is signed in;
//  2. else, if an account holds the email: it is signed in if the identity is linked to it (links made
//     before identities had directory claims), and otherwise the answer is 409 account_exists with a
//     link token (link.go): nothing is linked and nobody is signed in;
//  3. else a user is created, verified, with the identity linked.
func (s *Service) signIn(ctx context.Context, id Identity, proof Proof, role authn.Role, m Meta) (any, bool, error) {
	var err error
	// Twice: a registration of the same email may win the race between our lookup and our claim.
	for range 2 {
		var (
			user  shardkey.ID
			home  string
			found bool
			b     any
		)
		if user, home, found, err = s.accounts.FindIdentity(ctx, id.Provider, id.Subject); err != nil {
			return nil, false, err
		}
		if found {
			b, err = s.login(ctx, home, user, id, proof, m)
			if err == nil || (!errors.Is(err, ErrNoUser) && !errors.Is(err, ErrNotLinked)) {
				return b, false, err
			}
			// A claim whose user is gone, or whose link was never written: decide by the email.
		}
		if user, home, found, err = s.accounts.FindUser(ctx, id.Email); err != nil {
			return nil, false, err
		}
		if found {
			b, err = s.login(ctx, home, user, id, proof, m)
			switch {
			case errors.Is(err, ErrNotLinked):
				return nil, false, s.accountExists(id)
			case !errors.Is(err, ErrNoUser):
				return b, false, err
			}
			// The claim has no user (yet): create one; the claim protocol decides whether we may.
		}
		b, err = s.accounts.CreateUser(ctx, id, role, m)
		if err == nil {
			return b, true, nil
		}
		if !isEmailTaken(err) {
			return nil, false, err
		}
	}
	return nil, false, err
}

func isEmailTaken(err error) bool {
	var e *apierror.Error
	return errors.As(err, &e) && e.Code == directory.ErrTaken.Code
}

// login signs in an existing user in its home region (here or through the Internal route, with the
// provider's proof, which the home region verifies again before it opens a session).
func (s *Service) login(ctx context.Context, home string, user shardkey.ID, id Identity, proof Proof, m Meta) (any, error) {
	if home == s.a.Region {
		return s.accounts.SignIn(ctx, user, id, m)
	}
	// The home region's answer is the token bundle, passed on as it is.
	var b json.RawMessage
	err := s.a.Peers.Call(ctx, home, http.MethodPost, feature.InternalPath("/internal/oauth-login"), internalLoginRequest{
		UserID: user, Provider: id.Provider, Subject: id.Subject, Email: id.Email, IP: m.IP, UserAgent: m.UserAgent,
		IDToken: proof.IDToken, AccessToken: proof.AccessToken,
	}, &b)
	var e *apierror.Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return nil, ErrNoUser
	}
	if errors.As(err, &e) && e.Code == codeNotLinked {
		return nil, ErrNotLinked
	}
	if errors.As(err, &e) && e.Code == errProviderDown.Code {
		// The home region could not reach the provider to check the proof.
		return nil, errProviderDown.WithCause(err)
	}
	if err != nil {
		return nil, feature.PeerError(ctx, home, err)
	}
	return b, nil
}

// codeNotLinked is /internal/oauth-login's answer for ErrNotLinked.
const codeNotLinked = "not_linked"

// HandleInternalLogin serves POST /internal/oauth-login: a sign-in another region's node forwarded
// to the user's home region. The calling node's word is not enough: the provider's proof (Google's ID
// token, GitHub's access token) must vouch, as this node checks it itself, for the subject and email
// being signed in (401 otherwise, and nothing happens). It signs in only an identity already linked
// to the user.
func (s *Service) HandleInternalLogin(w http.ResponseWriter, r *http.Request) error {
	var req internalLoginRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	p, ok := s.providers[req.Provider]
	if !ok {
		return apierror.Forbidden("this region has no " + req.Provider + " sign-in configured, so it cannot check the proof")
	}
	if err := p.confirm(r.Context(), Proof{IDToken: req.IDToken, AccessToken: req.AccessToken},
		Identity{Provider: req.Provider, Subject: req.Subject, Email: req.Email}); err != nil {
		return err
	}
	b, err := s.accounts.SignIn(r.Context(), req.UserID, Identity{Provider: req.Provider, Subject: req.Subject, Email: req.Email},
		Meta{IP: req.IP, UserAgent: req.UserAgent})
	if errors.Is(err, ErrNoUser) {
		return apierror.NotFound("user")
	}
	if errors.Is(err, ErrNotLinked) {
		return apierror.Conflict(codeNotLinked, "the identity is not linked to the user")
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, b)
	return nil
}
