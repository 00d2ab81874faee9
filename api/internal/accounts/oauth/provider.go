package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/internal/apierror"
)

// OAuth providers this package knows how to talk to.
const (
	ProviderGoogle = "google"
	ProviderGitHub = "github"
)

// ProviderConfig is one OAuth provider's client registration and endpoints. Every endpoint is
// configurable, so tests run the whole code flow against a local stand-in provider.
type ProviderConfig struct {
	ClientID     string
	ClientSecret string
	AuthURL      string
	TokenURL     string
	// Issuer and JWKSURL verify Google's ID tokens (OIDC). Unused for GitHub.
	Issuer  string
	JWKSURL string
	// APIBaseURL is GitHub's REST API (/user, /user/emails). Unused for Google.
	APIBaseURL string
	// Scopes requested; empty takes the provider's default (openid email profile; read:user user:email).
	Scopes []string
}

// GoogleProvider returns Google's production endpoints for a client registration.
func GoogleProvider(clientID, clientSecret string) ProviderConfig {
	return ProviderConfig{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		AuthURL:      "https://accounts.google.com/o/oauth2/v2/auth",
		TokenURL:     "https://oauth2.googleapis.com/token",
		Issuer:       "https://accounts.google.com",
		JWKSURL:      "https://www.googleapis.com/oauth2/v3/certs",
	}
}

// GitHubProvider returns GitHub's production endpoints for a client registration.
func GitHubProvider(clientID, clientSecret string) ProviderConfig {
	return ProviderConfig{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		AuthURL:      "https://github.com/login/oauth/authorize",
		TokenURL:     "https://github.com/login/oauth/access_token",
		APIBaseURL:   "https://api.github.com",
	}
}

func (p ProviderConfig) scopes(provider string) []string {
	if len(p.Scopes) > 0 {
		return p.Scopes
	}
	if provider == ProviderGoogle {
		return []string{"openid", "email", "profile"}
	}
	return []string{"read:user", "user:email"}
}

func (p ProviderConfig) validate(name string) error {
	field := func(f string) string { return fmt.Sprintf("OAuth[%q].%s", name, f) }
	if name != ProviderGoogle && name != ProviderGitHub {
		return fmt.Errorf("OAuth provider %q is not supported (google, github)", name)
	}
	if p.ClientID == "" {
		return errors.New(field("ClientID") + " is required")
	}
	urls := map[string]string{"AuthURL": p.AuthURL, "TokenURL": p.TokenURL}
	if name == ProviderGoogle {
		urls["Issuer"], urls["JWKSURL"] = p.Issuer, p.JWKSURL
	} else {
		urls["APIBaseURL"] = p.APIBaseURL
	}
	names := make([]string, 0, len(urls))
	for k := range urls {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !httpURL(urls[k]) {
			return fmt.Errorf("%s must be an http(s) URL, got %q", field(k), urls[k])
		}
	}
	return nil
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// maxProviderAnswer bounds what a provider's API may send back.
const maxProviderAnswer = 1 << 20

// provider is a configured provider, ready to run the code flow.
type provider struct {
	name     string
	cfg      ProviderConfig
	conf     *oauth2.Config
	client   *http.Client
	verifier *oidc.IDTokenVerifier // Google only
}

func newProvider(name string, pc ProviderConfig, base string, client *http.Client, now func() time.Time) *provider {
	p := &provider{
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

// Proof is what the provider's code exchange produced and the user's home region checks again
// itself before it signs anyone in through /internal/oauth-login: Google's ID token (signed by Google)
// or GitHub's access token (which the home region spends on GitHub's /user and /user/emails). Neither
// is ever stored or logged.
type Proof struct {
	IDToken     string
	AccessToken string
}

// proofOf keeps what the home region needs from the token answer: the ID token for OIDC, else the
// access token.
func (p *provider) proofOf(tok *oauth2.Token) Proof {
	if p.verifier != nil {
		raw, _ := tok.Extra("id_token").(string)
		return Proof{IDToken: raw}
	}
	return Proof{AccessToken: tok.AccessToken}
}

// identify asks the provider who signed in. nonce is the OIDC nonce the sign-in sent; empty skips
// its check, which only the home region's re-check of a proof does (the region that finished the
// callback checked it, and the home region never saw it).
func (p *provider) identify(ctx context.Context, proof Proof, nonce string, checkNonce bool) (Identity, error) {
	id := Identity{Provider: p.name}
	if p.verifier != nil {
		if proof.IDToken == "" {
			return id, errProviderDown.WithCause(errors.New("no id_token in the token answer"))
		}
		idt, err := p.verifier.Verify(ctx, proof.IDToken)
		if err != nil {
			return id, apierror.Unauthenticated("the provider's ID token did not verify").WithCause(err)
		}
		if checkNonce && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
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
		if proof.AccessToken == "" {
			return id, errProviderDown.WithCause(errors.New("no access_token in the token answer"))
		}
		var u struct {
			ID    int64  `json:"id"`
			Login string `json:"login"`
			Name  string `json:"name"`
		}
		if err := p.getJSON(ctx, proof.AccessToken, "/user", &u); err != nil {
			return id, err
		}
		var emails []struct {
			Email    string `json:"email"`
			Primary  bool   `json:"primary"`
			Verified bool   `json:"verified"`
		}
		if err := p.getJSON(ctx, proof.AccessToken, "/user/emails", &emails); err != nil {
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
	id.Email = directory.NormalizeEmail(id.Email)
	if directory.EmailProblem(id.Email) != "" {
		return id, apierror.Unauthenticated("the provider's email address is not usable")
	}
	if id.Subject == "" || len(id.Subject) > maxSubject {
		return id, errProviderDown.WithCause(errors.New("bad subject"))
	}
	return id, nil
}

// errProofRefused is the home region's answer to a forwarded sign-in whose proof does not show the
// provider vouching for that identity now.
var errProofRefused = apierror.Unauthenticated("the provider's proof does not vouch for this sign-in")

// confirm is the home region's own check of a forwarded sign-in: the proof must verify with the
// provider as this node is configured for it (Google: issuer, audience = our client ID, signature
// through the JWKS, expiry, email_verified; GitHub: /user and /user/emails answer for the token), and
// name the very subject and email being signed in.
func (p *provider) confirm(ctx context.Context, proof Proof, want Identity) error {
	if (p.verifier != nil && proof.IDToken == "") || (p.verifier == nil && proof.AccessToken == "") {
		return errProofRefused.WithCause(errors.New("the forwarded sign-in carries no proof for " + p.name))
	}
	got, err := p.identify(ctx, proof, "", false)
	if err != nil {
		var e *apierror.Error
		var se statusError
		if p.verifier == nil && errors.As(err, &e) && e.Status == http.StatusBadGateway && (!errors.As(err, &se) || se.status >= 500) {
			return err // GitHub did not answer properly: the provider is down, not the proof bad
		}
		// A made-up, expired or foreign ID token; a token GitHub refuses (401); an unverified email.
		return errProofRefused.WithCause(err)
	}
	if subtle.ConstantTimeCompare([]byte(got.Subject), []byte(want.Subject)) != 1 || got.Email != want.Email {
		return errProofRefused.WithCause(fmt.Errorf("the proof is of subject %q, email %q", got.Subject, got.Email))
	}
	return nil
}

// statusError is a provider API answer other than 200.
type statusError struct {
	path   string
	status int
}

func (e statusError) Error() string { return fmt.Sprintf("%s: status %d", e.path, e.status) }

func (p *provider) getJSON(ctx context.Context, accessToken, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(p.cfg.APIBaseURL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := p.client.Do(req)
	if err != nil {
		return errProviderDown.WithCause(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errProviderDown.WithCause(statusError{path: path, status: resp.StatusCode})
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxProviderAnswer)).Decode(out); err != nil {
		return errProviderDown.WithCause(fmt.Errorf("%s: %w", path, err))
	}
	return nil
}
