package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// maxProviderAnswer bounds what a provider's API may send back.
const maxProviderAnswer = 1 << 20

// identity is a user as a provider vouches for them: a verified email and a stable subject.
type identity struct {
	Provider string
	Subject  string
	Email    string // normalised
	Name     string
}

type oauthProvider struct {
	name     string
	cfg      ProviderConfig
	conf     *oauth2.Config
	client   *http.Client
	verifier *oidc.IDTokenVerifier // Google only
}

func newOAuthProvider(name string, pc ProviderConfig, base string, client *http.Client, now func() time.Time) *oauthProvider {
	p := &oauthProvider{
		name:   name,
		cfg:    pc,
		client: client,
		conf: &oauth2.Config{
			ClientID:     pc.ClientID,
			ClientSecret: pc.ClientSecret,
			Endpoint:     oauth2.Endpoint{AuthURL: pc.AuthURL, TokenURL: pc.TokenURL},
			RedirectURL:  base + "/api/v1/auth/oauth/" + name + "/callback",
			Scopes:       pc.scopes(name),
		},
	}
	if name == ProviderGoogle {
		// go-oidc keeps this context for the key fetches it makes later; it carries only the HTTP
		// client, no deadline and no request data.
		keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), client), pc.JWKSURL)
		p.verifier = oidc.NewVerifier(pc.Issuer, keys, &oidc.Config{ClientID: pc.ClientID, Now: now})
	}
	return p
}

var (
	errProviderDown = &apierror.Error{Status: http.StatusBadGateway, Code: "provider_unavailable", Message: "the sign-in provider did not answer properly; retry later"}
	errNoSignIn     = apierror.BadRequest("no OAuth sign-in is in progress in this browser, or it expired; start again")
	errStateMatch   = apierror.BadRequest("the OAuth state does not match the sign-in this browser started; start again")
)

func (s *Service) provider(r *http.Request) (*oauthProvider, error) {
	p, ok := s.oauth[mux.Vars(r)["provider"]]
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

func (s *Service) cookiePath(p *oauthProvider) string { return "/api/v1/auth/oauth/" + p.name }

// handleOAuthStart sends the browser to the provider with a fresh state, PKCE challenge (S256) and,
// for OIDC, nonce, all three remembered in the signed cookie.
func (s *Service) handleOAuthStart(w http.ResponseWriter, r *http.Request) error {
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
	st := oauthState{Provider: p.name, State: state, Verifier: oauth2.GenerateVerifier(), Role: role, Expires: s.now().Add(stateTTL).Unix()}
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
		Name: stateCookie, Value: sealed, Path: s.cookiePath(p), MaxAge: int(stateTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(s.cfg.RedirectBaseURL, "https://"),
		// Lax: the provider's redirect back is a top-level cross-site GET, which Lax lets through.
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", p.conf.AuthCodeURL(state, opts...))
	w.WriteHeader(http.StatusFound)
	return nil
}

// handleOAuthCallback finishes the flow: it checks the state against the cookie, exchanges the code
// with the PKCE verifier, gets a verified email, and signs the user in (creating them if needed).
func (s *Service) handleOAuthCallback(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provider(r)
	if err != nil {
		return err
	}
	// The cookie is single-use whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: "", Path: s.cookiePath(p), MaxAge: -1, HttpOnly: true,
		Secure: strings.HasPrefix(s.cfg.RedirectBaseURL, "https://"), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	ck, err := r.Cookie(stateCookie)
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
	id, err := p.identify(ctx, tok, st.Nonce)
	if err != nil {
		return err
	}
	b, created, err := s.oauthSignIn(r.Context(), id, st.Role, s.metaOf(r))
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

// identify asks the provider who signed in.
func (p *oauthProvider) identify(ctx context.Context, tok *oauth2.Token, nonce string) (identity, error) {
	id := identity{Provider: p.name}
	if p.verifier != nil {
		raw, _ := tok.Extra("id_token").(string)
		if raw == "" {
			return id, errProviderDown.WithCause(errors.New("no id_token in the token answer"))
		}
		idt, err := p.verifier.Verify(ctx, raw)
		if err != nil {
			return id, apierror.Unauthenticated("the provider's ID token did not verify").WithCause(err)
		}
		if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
			return id, apierror.Unauthenticated("the provider's ID token was not issued for this sign-in")
		}
		var c struct {
			Email         string          `json:"email"`
			EmailVerified json.RawMessage `json:"email_verified"`
			Name          string          `json:"name"`
		}
		if err := idt.Claims(&c); err != nil {
			return id, errProviderDown.WithCause(err)
		}
		// Google sends a boolean; some OIDC providers send the string "true".
		if v := string(c.EmailVerified); v != "true" && v != `"true"` {
			return id, apierror.Unauthenticated("the provider has not verified this account's email")
		}
		id.Subject, id.Email, id.Name = idt.Subject, c.Email, c.Name
	} else {
		var u struct {
			ID    int64  `json:"id"`
			Login string `json:"login"`
			Name  string `json:"name"`
		}
		if err := p.getJSON(ctx, tok, "/user", &u); err != nil {
			return id, err
		}
		var emails []struct {
			Email    string `json:"email"`
			Primary  bool   `json:"primary"`
			Verified bool   `json:"verified"`
		}
		if err := p.getJSON(ctx, tok, "/user/emails", &emails); err != nil {
			return id, err
		}
		for _, e := range emails {
			if e.Primary && e.Verified {
				id.Email = e.Email
			}
		}
		if id.Email == "" {
			return id, apierror.Unauthenticated("the GitHub account has no verified primary email")
		}
		if u.ID <= 0 {
			return id, errProviderDown.WithCause(errors.New("github /user has no id"))
		}
		id.Subject, id.Name = strconv.FormatInt(u.ID, 10), u.Name
		if id.Name == "" {
			id.Name = u.Login
		}
	}
	id.Email = normalizeEmail(id.Email)
	if emailProblem(id.Email) != "" {
		return id, apierror.Unauthenticated("the provider's email address is not usable")
	}
	if id.Subject == "" || len(id.Subject) > 255 {
		return id, errProviderDown.WithCause(errors.New("bad subject"))
	}
	id.Name = displayName(id.Name, id.Email)
	return id, nil
}

// displayName makes a valid user name from what the provider said, or the email's local part.
func displayName(name, email string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, strings.TrimSpace(name))
	if name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	if r := []rune(name); len(r) > maxName {
		name = strings.TrimSpace(string(r[:maxName]))
	}
	return name
}

func (p *oauthProvider) getJSON(ctx context.Context, tok *oauth2.Token, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(p.cfg.APIBaseURL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := p.client.Do(req)
	if err != nil {
		return errProviderDown.WithCause(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errProviderDown.WithCause(fmt.Errorf("%s: status %d", path, resp.StatusCode))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxProviderAnswer)).Decode(out); err != nil {
		return errProviderDown.WithCause(fmt.Errorf("%s: %w", path, err))
	}
	return nil
}

// oauthSignIn finds the user with the identity's email through the directory (wherever they live)
// or creates one in this region, links the identity and opens a session. created says which.
func (s *Service) oauthSignIn(ctx context.Context, id identity, role authn.Role, m reqMeta) (tokenBundle, bool, error) {
	h := directory.HashEmail(s.cfg.EmailPepper, id.Email)
	var err error
	// Twice: a registration of the same email may win the race between our lookup and our claim.
	for range 2 {
		var (
			c     directory.Claim
			found bool
			b     tokenBundle
		)
		if c, found, err = s.dir.Lookup(ctx, h); err != nil {
			return tokenBundle{}, false, err
		}
		if found {
			b, err = s.oauthLogin(ctx, s.regionOf(c.UserID, c.HomeRegion), c.UserID, id, m)
			if !errors.Is(err, errNoUser) {
				return b, false, err
			}
			// The claim has no user (yet): create one; the claim protocol decides whether we may.
		}
		ksid, routed, err2 := s.newUserShard(ctx, s.a.Region)
		if err2 != nil {
			return tokenBundle{}, false, err2
		}
		b, err = s.createUser(ctx, newUser{KSID: ksid, Shard: routed, Email: id.Email, Name: id.Name, Role: role, Region: s.a.Region, OAuth: &id}, m)
		if err == nil {
			return b, true, nil
		}
		if !isEmailTaken(err) {
			return tokenBundle{}, false, err
		}
	}
	return tokenBundle{}, false, err
}

func isEmailTaken(err error) bool {
	var e *apierror.Error
	return errors.As(err, &e) && e.Code == errEmailTaken.Code
}

// oauthLogin signs in an existing user in its home region (here or through the Internal route).
func (s *Service) oauthLogin(ctx context.Context, home string, userID shardkey.ID, id identity, m reqMeta) (tokenBundle, error) {
	if home == s.a.Region {
		return s.oauthLoginLocal(ctx, userID, id, m)
	}
	var b tokenBundle
	err := s.a.Peers.Call(ctx, home, http.MethodPost, internalPath("/internal/oauth-login"), internalOAuthRequest{
		UserID: userID, Provider: id.Provider, Subject: id.Subject, Email: id.Email, IP: m.IP, UserAgent: m.UserAgent,
	}, &b)
	var e *apierror.Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return b, errNoUser
	}
	if err != nil {
		return b, peerError(ctx, home, err)
	}
	return b, nil
}

func (s *Service) oauthLoginLocal(ctx context.Context, userID shardkey.ID, id identity, m reqMeta) (tokenBundle, error) {
	routed, err := s.a.WriteShard(ctx, userID.KeyspaceID())
	if err != nil {
		return tokenBundle{}, err
	}
	ksid := routed.Route.KeyspaceID
	var b tokenBundle
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		u, err := loadUser(ctx, tx, ksid, userID, "FOR SHARE")
		if err != nil {
			return err
		}
		if u.Deleted || u.EmailNorm != id.Email {
			return errNoUser
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO auth.oauth_identities (ksid, provider, subject, user_id, email, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ksid, provider, subject) DO NOTHING`,
			ksid.Bytes(), id.Provider, id.Subject, userID.Bytes(), id.Email, s.now())
		if err != nil {
			return err
		}
		var fam shardkey.ID
		if b, fam, err = s.startSession(ctx, tx, u); err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, userID, audit.ActionOAuthLogin, fam.String(), m,
			map[string]any{"provider": id.Provider, "linked": tag.RowsAffected() == 1})
	})
	return b, err
}

// internalOAuthRequest is an OAuth sign-in forwarded to the user's home region.
type internalOAuthRequest struct {
	UserID    shardkey.ID `json:"user_id"`
	Provider  string      `json:"provider"`
	Subject   string      `json:"subject"`
	Email     string      `json:"email"`
	IP        netip.Addr  `json:"ip,omitzero"`
	UserAgent string      `json:"user_agent,omitempty"`
}

func (r *internalOAuthRequest) Validate() map[string]string {
	f := map[string]string{}
	if r.UserID.Kind() != shardkey.KindUser {
		f["user_id"] = "must be a user ID"
	}
	if r.Provider != ProviderGoogle && r.Provider != ProviderGitHub {
		f["provider"] = "must be google or github"
	}
	if r.Subject == "" || len(r.Subject) > 255 {
		f["subject"] = "must be 1 to 255 bytes"
	}
	r.Email = normalizeEmail(r.Email)
	if p := emailProblem(r.Email); p != "" {
		f["email"] = p
	}
	return f
}

func (s *Service) handleInternalOAuthLogin(w http.ResponseWriter, r *http.Request) error {
	var req internalOAuthRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	b, err := s.oauthLoginLocal(r.Context(), req.UserID, identity{Provider: req.Provider, Subject: req.Subject, Email: req.Email},
		reqMeta{IP: req.IP, UserAgent: req.UserAgent})
	if errors.Is(err, errNoUser) {
		return apierror.NotFound("user")
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, b)
	return nil
}
