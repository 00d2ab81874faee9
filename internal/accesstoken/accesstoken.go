// Package accesstoken verifies Meridian's access tokens: JWTs signed with Ed25519 (EdDSA), carrying
// the user's ID, role, home region and keyspace ID, with typ at+jwt, kid, iss, aud and exp required.
//
// Use it wherever a token is checked: the API nodes verify with their own key set, the edge router
// with the set the nodes publish as a JWKS (so it verifies without calling a node). Both run the same
// Verifier, so the edge and the nodes cannot disagree on what a valid token is. Issuing, and every
// private key, is internal/tokenissue's, which only the nodes (and test harnesses playing a node) link.
package accesstoken

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// TokenType is the JWT "typ" header of access tokens (RFC 9068), so that no other JWT passes as one.
const TokenType = "at+jwt"

var (
	// ErrInvalidToken wraps every verification failure.
	ErrInvalidToken = errors.New("invalid access token")
	// ErrExpired is wrapped when the token is well-formed but expired.
	ErrExpired = errors.New("access token expired")
	// ErrUnknownKey is wrapped (with ErrInvalidToken) when an access token names a kid the key set
	// lacks: the router fetches the nodes' keys again on it, since that is how a rotation reaches it.
	ErrUnknownKey = errors.New("unknown token key")
	// ErrRevoked is wrapped (with ErrInvalidToken) when a token was marked revoked with Revoke: its
	// session ended (logout, refresh-token reuse, a role change, the account's deletion).
	ErrRevoked = errors.New("access token revoked")
)

// Key is one Ed25519 public key, by its ID.
type Key struct {
	ID     string
	Public ed25519.PublicKey
}

// KeyID derives a key's ID from its public key, so the same key has the same kid everywhere.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// KeySet is the public keys tokens may be verified with. It is immutable.
type KeySet struct {
	keys map[string]Key
}

// NewKeySet builds a set of at least one key.
func NewKeySet(keys []Key) (*KeySet, error) {
	ks := &KeySet{keys: make(map[string]Key, len(keys))}
	for _, k := range keys {
		if len(k.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("accesstoken: key %s: not an Ed25519 public key", k.ID)
		}
		ks.keys[k.ID] = k
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("accesstoken: empty key set")
	}
	return ks, nil
}

// Len is the number of keys.
func (ks *KeySet) Len() int { return len(ks.keys) }

// Has reports whether the set holds the key kid.
func (ks *KeySet) Has(kid string) bool {
	_, ok := ks.keys[kid]
	return ok
}

// Covers reports whether every key of old is still in ks: then a token verified with old verifies
// with ks too, and what was verified with old may be trusted under ks.
func (ks *KeySet) Covers(old *KeySet) bool {
	for id := range old.keys {
		if !ks.Has(id) {
			return false
		}
	}
	return true
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

type jwks struct {
	Keys []jwk `json:"keys"`
}

// JWKS returns the keys as a JSON Web Key Set (RFC 7517, OKP keys of RFC 8037), in kid order.
func (ks *KeySet) JWKS() []byte {
	out := jwks{Keys: []jwk{}}
	ids := make([]string, 0, len(ks.keys))
	for id := range ks.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		k := ks.keys[id]
		out.Keys = append(out.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.Public), Kid: id, Use: "sig", Alg: "EdDSA"})
	}
	b, _ := json.Marshal(out)
	return b
}

// ParseJWKS reads a JWKS into a key set. Keys that are not Ed25519 signing keys are skipped.
func ParseJWKS(data []byte) (*KeySet, error) {
	var set jwks
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("accesstoken: JWKS: %w", err)
	}
	var keys []Key
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("accesstoken: JWKS key %q: bad x", k.Kid)
		}
		if KeyID(pub) != k.Kid {
			return nil, fmt.Errorf("accesstoken: JWKS key %q: kid does not match the key", k.Kid)
		}
		keys = append(keys, Key{ID: k.Kid, Public: pub})
	}
	return NewKeySet(keys)
}

// Claims are an access token's claims; internal/tokenissue writes them, Verify reads them.
type Claims struct {
	jwt.RegisteredClaims
	Role   string `json:"role"`
	Region string `json:"region"`
	KSID   string `json:"ksid"`
	// EmailVerified says the user had proved their email when the token was issued (OIDC's claim
	// name); absent means unverified.
	EmailVerified bool `json:"email_verified,omitempty"`
	// AuthTime is when the user last proved who they are (the login that started the session;
	// OIDC's auth_time): refreshes keep it, so it tells a fresh login from a long-lived session.
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
	// SessionID is the session's refresh-token family (OIDC's sid): revoking the family revokes the
	// token.
	SessionID string `json:"sid,omitempty"`
}

// Subject is what a token says about its user.
type Subject struct {
	UserID shardkey.ID
	KSID   shardkey.KeyspaceID
	Role   string
	Region string
	// EmailVerified: the user had proved their email when the token was issued.
	EmailVerified bool
	// AuthTime and Session are the login the token descends from (zero when a token does not say;
	// the nodes issue every token in a session, so only test harnesses' tokens lack them).
	AuthTime time.Time
	Session  shardkey.ID
}

// Token is a verified access token.
type Token struct {
	Subject Subject
	// UserID is Subject.UserID in text, computed once per token: the router keys rate limits and logs
	// by it on every request.
	UserID string
	// Expires is the token's exp.
	Expires time.Time
	// Revoked is set on a cached token that Revoke marked.
	Revoked bool
}

// Config fixes what a valid token says and how verified tokens are kept.
type Config struct {
	Issuer   string
	Audience string
	// Leeway tolerates clock skew between nodes and routers.
	Leeway time.Duration
	// CacheSize bounds the cache of verified tokens (0 turns it off). A signature check costs about
	// 50-150 µs of CPU, and a client presents the same token on every request until it expires.
	CacheSize int
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Issuer == "":
		return errors.New("accesstoken: Issuer is required")
	case c.Audience == "":
		return errors.New("accesstoken: Audience is required")
	case c.Leeway < 0:
		return errors.New("accesstoken: Leeway must not be negative")
	case c.CacheSize < 0:
		return errors.New("accesstoken: CacheSize must not be negative")
	}
	return nil
}

// Verifier verifies access tokens with one key set. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	keys   *KeySet
	now    func() time.Time
	parser *jwt.Parser
	cache  *verified
}

// NewVerifier returns a Verifier. now may be nil (time.Now).
func NewVerifier(cfg Config, keys *KeySet, now func() time.Time) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, errors.New("accesstoken: no keys")
	}
	if now == nil {
		now = time.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
	)
	return &Verifier{cfg: cfg, keys: keys, now: now, parser: p, cache: newVerified(cfg.CacheSize)}, nil
}

// Keys returns the key set tokens are verified with.
func (v *Verifier) Keys() *KeySet { return v.keys }

// WithKeys returns a Verifier with v's configuration on another key set. It keeps v's cache when ks
// still holds every key of v's set (a key was added), and starts an empty one when a key was retired:
// tokens signed with a retired key must stop passing at once.
func (v *Verifier) WithKeys(ks *KeySet) (*Verifier, error) {
	n, err := NewVerifier(v.cfg, ks, v.now)
	if err != nil {
		return nil, err
	}
	if ks.Covers(v.keys) {
		n.cache = v.cache
	}
	return n, nil
}

// Len returns the number of cached tokens (for tests and metrics).
func (v *Verifier) Len() int { return v.cache.len() }

// Verify checks a token's signature (EdDSA only, by kid), type, issuer, audience, expiry and subject.
// Errors wrap ErrInvalidToken, and also ErrExpired or ErrUnknownKey when that is why.
func (v *Verifier) Verify(token string) (Subject, error) {
	t, err := v.VerifyToken(token)
	return t.Subject, err
}

// VerifyToken is Verify, with the token's user ID in text and its expiry. A token verified before is
// answered from the cache until it expires: the cache is keyed by the whole token (never a hash of it,
// so no collision can make one token pass for another), so only the same signed bytes hit it.
func (v *Verifier) VerifyToken(token string) (Token, error) {
	if t, ok := v.cache.get(token, v.now().Add(-v.cfg.Leeway)); ok {
		if t.Revoked {
			return Token{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrRevoked)
		}
		return t, nil
	}
	t, err := v.parse(token)
	if err == nil {
		v.cache.put(token, t)
	}
	return t, err
}

// Revoke marks a token that verifies as revoked until it expires, so that VerifyToken refuses it
// without asking anyone: the edge router calls it when a node refuses the token because its session
// ended. It needs the cache (with CacheSize 0 it does nothing) and it bounds what it keeps by the
// same size, so a flood of revoked tokens evicts others rather than growing the cache. A token that
// does not verify is not recorded (it fails anyway).
func (v *Verifier) Revoke(token string) {
	if v.cache == nil {
		return
	}
	t, err := v.parse(token)
	if err != nil {
		return
	}
	t.Revoked = true
	v.cache.put(token, t)
}

func (v *Verifier) parse(token string) (Token, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(tok *jwt.Token) (any, error) {
		if typ, _ := tok.Header["typ"].(string); !strings.EqualFold(typ, TokenType) {
			return nil, errors.New("not an access token")
		}
		kid, _ := tok.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		k, ok := v.keys.keys[kid]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
		}
		return k.Public, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Token{}, fmt.Errorf("%w: %w", ErrExpired, err)
		}
		return Token{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	id, err := shardkey.ParseIDOfKind(c.Subject, shardkey.KindUser)
	if err != nil {
		return Token{}, fmt.Errorf("%w: sub: %w", ErrInvalidToken, err)
	}
	k, err := shardkey.ParseKeyspaceID(c.KSID)
	if err != nil {
		return Token{}, fmt.Errorf("%w: ksid: %w", ErrInvalidToken, err)
	}
	if c.Role == "" || c.Region == "" {
		return Token{}, fmt.Errorf("%w: role and region are required", ErrInvalidToken)
	}
	sub := Subject{UserID: id, KSID: k, Role: c.Role, Region: c.Region, EmailVerified: c.EmailVerified}
	if c.AuthTime != nil {
		sub.AuthTime = c.AuthTime.Time
	}
	if c.SessionID != "" {
		if sub.Session, err = shardkey.ParseIDOfKind(c.SessionID, shardkey.KindTokenFamily); err != nil {
			return Token{}, fmt.Errorf("%w: sid: %w", ErrInvalidToken, err)
		}
	}
	return Token{
		Subject: sub,
		UserID:  id.String(),
		Expires: c.ExpiresAt.Time,
	}, nil
}
