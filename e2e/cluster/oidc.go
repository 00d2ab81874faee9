package cluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OIDCProvider is a local stand-in for Google's OpenID Connect endpoints, which every node of the
// cluster is configured with as its "google" provider: it issues authorisation codes bound to the
// PKCE challenge, exchanges them only with the matching verifier, and signs ID tokens (RS256, the
// nonce the client sent) with a key it publishes as a JWKS. The test picks who signs in with Next.
type OIDCProvider struct {
	URL string
	key *rsa.PrivateKey

	mu    sync.Mutex
	next  OIDCIdentity
	codes map[string]oidcGrant
}

// OIDCIdentity is who signs in at the provider.
type OIDCIdentity struct {
	Subject, Email, Name string
	EmailVerified        bool
}

type oidcGrant struct {
	who                        OIDCIdentity
	challenge, redirect, nonce string
}

// The client registration the nodes use.
const (
	OIDCClientID     = "meridian-e2e"
	OIDCClientSecret = "meridian-e2e-secret"
)

func startOIDCProvider(tb testing.TB) *OIDCProvider {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	p := &OIDCProvider{key: key, codes: map[string]oidcGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /jwks", p.jwks)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Next sets who signs in at the next authorisation.
func (p *OIDCProvider) Next(who OIDCIdentity) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = who
}

func random() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (p *OIDCProvider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != OIDCClientID || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("state") == "" || q.Get("nonce") == "" || q.Get("redirect_uri") == "" {
		http.Error(w, "bad authorisation request", http.StatusBadRequest)
		return
	}
	code := random()
	p.mu.Lock()
	p.codes[code] = oidcGrant{who: p.next, challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri"), nonce: q.Get("nonce")}
	p.mu.Unlock()
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := back.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *OIDCProvider) token(w http.ResponseWriter, r *http.Request) {
	fail := func() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
	}
	if err := r.ParseForm(); err != nil {
		fail()
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	code := r.PostForm.Get("code")
	p.mu.Lock()
	g, found := p.codes[code]
	delete(p.codes, code)
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if id != OIDCClientID || secret != OIDCClientSecret || !found || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge ||
		r.PostForm.Get("redirect_uri") != g.redirect {
		fail()
		return
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": p.URL, "aud": OIDCClientID, "sub": g.who.Subject, "email": g.who.Email, "email_verified": g.who.EmailVerified,
		"name": g.who.Name, "nonce": g.nonce, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "e2e-1"
	signed, err := tok.SignedString(p.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": random(), "token_type": "bearer", "expires_in": 3600, "id_token": signed})
}

func (p *OIDCProvider) jwks(w http.ResponseWriter, _ *http.Request) {
	pub := p.key.PublicKey
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "kid": "e2e-1", "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}
