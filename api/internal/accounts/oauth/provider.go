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

// identify asks the provider who signed in.
func (p *provider) identify(ctx context.Context, tok *oauth2.Token, nonce string) (Identity, error) {
	id := Identity{Provider: p.name}
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
	id.Email = directory.NormalizeEmail(id.Email)
	if directory.EmailProblem(id.Email) != "" {
		return id, apierror.Unauthenticated("the provider's email address is not usable")
	}
	if id.Subject == "" || len(id.Subject) > maxSubject {
		return id, errProviderDown.WithCause(errors.New("bad subject"))
	}
	return id, nil
}

func (p *provider) getJSON(ctx context.Context, tok *oauth2.Token, path string, out any) error {
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
