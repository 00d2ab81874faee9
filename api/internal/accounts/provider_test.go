package accounts

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
)

// stubProvider is a local stand-in for Google (OIDC) and GitHub (OAuth2 + REST API): it issues
// authorisation codes bound to the PKCE challenge, exchanges them for tokens only with the matching
// verifier, signs ID tokens with its own RSA key published as a JWKS, and serves /user and
// /user/emails. The test picks who "signs in" with Next before each flow.
type stubProvider struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey

	mu     sync.Mutex
	next   stubIdentity
	codes  map[string]stubGrant
	tokens map[string]stubIdentity
}

type stubIdentity struct {
	Subject  string
	GitHubID int64
	Login    string
	Email    string
	Verified bool
	// GitHubEmails, when set, replaces the single primary email GitHub reports.
	GitHubEmails []map[string]any
	Name         string
	// BadNonce makes the ID token carry a nonce other than the one the client sent.
	BadNonce bool
}

type stubGrant struct {
	who         stubIdentity
	challenge   string
	redirectURI string
	clientID    string
	nonce       string
}

const (
	stubClientID     = "meridian-client"
	stubClientSecret = "meridian-secret"
)

func newStubProvider(t *testing.T) *stubProvider {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &stubProvider{t: t, key: key, codes: map[string]stubGrant{}, tokens: map[string]stubIdentity{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /google/authorize", p.authorize)
	mux.HandleFunc("GET /github/authorize", p.authorize)
	mux.HandleFunc("POST /google/token", func(w http.ResponseWriter, r *http.Request) { p.token(w, r, true) })
	mux.HandleFunc("POST /github/token", func(w http.ResponseWriter, r *http.Request) { p.token(w, r, false) })
	mux.HandleFunc("GET /google/jwks", p.jwks)
	mux.HandleFunc("GET /github/api/user", p.githubUser)
	mux.HandleFunc("GET /github/api/user/emails", p.githubEmails)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// Configs returns the providers as the service sees them.
func (p *stubProvider) Configs() map[string]oauth.ProviderConfig {
	u := p.srv.URL
	return map[string]oauth.ProviderConfig{
		oauth.ProviderGoogle: {ClientID: stubClientID, ClientSecret: stubClientSecret, AuthURL: u + "/google/authorize", TokenURL: u + "/google/token",
			Issuer: u + "/google", JWKSURL: u + "/google/jwks"},
		oauth.ProviderGitHub: {ClientID: stubClientID, ClientSecret: stubClientSecret, AuthURL: u + "/github/authorize", TokenURL: u + "/github/token",
			APIBaseURL: u + "/github/api"},
	}
}

// Next sets who signs in at the next authorisation.
func (p *stubProvider) Next(who stubIdentity) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = who
}

func randomString() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// authorize plays the user consenting: it answers with the redirect back to the client.
func (p *stubProvider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != stubClientID || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("redirect_uri") == "" {
		http.Error(w, "bad authorisation request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/google") && q.Get("nonce") == "" {
		http.Error(w, "OIDC needs a nonce", http.StatusBadRequest)
		return
	}
	code := randomString()
	p.mu.Lock()
	p.codes[code] = stubGrant{who: p.next, challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri"), clientID: q.Get("client_id"), nonce: q.Get("nonce")}
	p.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	v := back.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func tokenError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func (p *stubProvider) token(w http.ResponseWriter, r *http.Request, oidc bool) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != stubClientID || secret != stubClientSecret {
		tokenError(w, "invalid_client")
		return
	}
	code := r.PostForm.Get("code")
	p.mu.Lock()
	g, found := p.codes[code]
	delete(p.codes, code) // single use
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case r.PostForm.Get("grant_type") != "authorization_code" || !found:
		tokenError(w, "invalid_grant")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		tokenError(w, "invalid_grant") // PKCE failed
		return
	case r.PostForm.Get("redirect_uri") != g.redirectURI:
		tokenError(w, "invalid_grant")
		return
	}
	access := randomString()
	p.mu.Lock()
	p.tokens[access] = g.who
	p.mu.Unlock()
	out := map[string]any{"access_token": access, "token_type": "bearer", "expires_in": 3600}
	if oidc {
		nonce := g.nonce
		if g.who.BadNonce {
			nonce = "not-" + nonce
		}
		out["id_token"] = p.IDToken(g.who, nonce, nil)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// IDToken is an ID token the provider signs for who (as its token endpoint issues them, valid for
// an hour); change overrides or, with a nil value, removes claims.
func (p *stubProvider) IDToken(who stubIdentity, nonce string, change jwt.MapClaims) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": p.srv.URL + "/google", "aud": stubClientID, "sub": who.Subject, "email": who.Email,
		"email_verified": who.Verified, "name": who.Name, "nonce": nonce,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range change {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "stub-1"
	signed, err := tok.SignedString(p.key)
	if err != nil {
		p.t.Errorf("stub provider: signing: %v", err)
	}
	return signed
}

// AccessToken is a GitHub access token the provider answers /user and /user/emails for, as who.
func (p *stubProvider) AccessToken(who stubIdentity) string {
	access := randomString()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[access] = who
	return access
}

func (p *stubProvider) jwks(w http.ResponseWriter, r *http.Request) {
	pub := p.key.PublicKey
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "kid": "stub-1", "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

func (p *stubProvider) who(r *http.Request) (stubIdentity, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return stubIdentity{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	who, ok := p.tokens[tok]
	return who, ok
}

func (p *stubProvider) githubUser(w http.ResponseWriter, r *http.Request) {
	who, ok := p.who(r)
	if !ok {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": who.GitHubID, "login": who.Login, "name": who.Name, "email": nil})
}

func (p *stubProvider) githubEmails(w http.ResponseWriter, r *http.Request) {
	who, ok := p.who(r)
	if !ok {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	emails := who.GitHubEmails
	if emails == nil {
		emails = []map[string]any{
			{"email": "someone-else@users.noreply.github.com", "primary": false, "verified": true},
			{"email": who.Email, "primary": true, "verified": who.Verified},
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(emails)
}
