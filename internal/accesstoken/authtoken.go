// Package accesstoken issues and verifies Meridian's access tokens: JWTs signed with Ed25519 (EdDSA),
// carrying the user's ID, role, home region and keyspace ID, with kid, iss, aud and exp required. Keys
// rotate: a key set has one signing key and any number of verification keys, all published as a JWKS so
// the edge router can verify tokens without calling a node. The router imports this package too.
package accesstoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	// ErrNoSigningKey is returned by Issue on a verify-only key set.
	ErrNoSigningKey = errors.New("authtoken: key set has no signing key")
)

// Key is one Ed25519 key. Private is nil in a verify-only set.
type Key struct {
	ID      string
	Public  ed25519.PublicKey
	Private ed25519.PrivateKey
}

// KeyID derives a key's ID from its public key, so the same key has the same kid everywhere.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// KeySet is a signing key and the keys tokens may be verified with. It is immutable.
type KeySet struct {
	signing *Key
	keys    map[string]Key
}

// NewKeySet builds a set; signing (may be nil) must be among keys.
func NewKeySet(keys []Key, signingID string) (*KeySet, error) {
	ks := &KeySet{keys: make(map[string]Key, len(keys))}
	for _, k := range keys {
		if len(k.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("authtoken: key %s: not an Ed25519 public key", k.ID)
		}
		ks.keys[k.ID] = k
	}
	if signingID != "" {
		k, ok := ks.keys[signingID]
		if !ok || k.Private == nil {
			return nil, fmt.Errorf("authtoken: signing key %q is not in the set or has no private half", signingID)
		}
		ks.signing = &k
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("authtoken: empty key set")
	}
	return ks, nil
}

// GenerateKey makes a new Ed25519 key.
func GenerateKey() (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: KeyID(pub), Public: pub, Private: priv}, nil
}

// WriteKeyFile writes a private key as PKCS#8 PEM with mode 0600.
func WriteKeyFile(path string, k Key) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// LoadKeyDir reads every *.pem (PKCS#8 Ed25519 private key) in dir. The signing key is the one whose
// file name sorts last (name keys by date: 2026-11-26.pem), so rotation is: add a newer file, restart or
// reload; the older keys keep verifying tokens until their files are removed.
func LoadKeyDir(dir string) (*KeySet, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("authtoken: no *.pem signing keys in %s", dir)
	}
	slices.Sort(paths)
	var keys []Key
	for _, p := range paths {
		k, err := readKeyFile(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return NewKeySet(keys, keys[len(keys)-1].ID)
}

func readKeyFile(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return Key{}, fmt.Errorf("authtoken: %s: not a PEM PRIVATE KEY", path)
	}
	anyKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("authtoken: %s: %w", path, err)
	}
	priv, ok := anyKey.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("authtoken: %s: not an Ed25519 key", path)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return Key{ID: KeyID(pub), Public: pub, Private: priv}, nil
}

// SigningKeyID returns the kid new tokens are signed with ("" for a verify-only set).
func (ks *KeySet) SigningKeyID() string {
	if ks.signing == nil {
		return ""
	}
	return ks.signing.ID
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

// JWKS returns the public keys as a JSON Web Key Set (RFC 7517, OKP keys of RFC 8037).
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

// ParseJWKS reads a JWKS into a verify-only key set. Keys that are not Ed25519 signing keys are skipped.
func ParseJWKS(data []byte) (*KeySet, error) {
	var set jwks
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("authtoken: JWKS: %w", err)
	}
	var keys []Key
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("authtoken: JWKS key %q: bad x", k.Kid)
		}
		if KeyID(pub) != k.Kid {
			return nil, fmt.Errorf("authtoken: JWKS key %q: kid does not match the key", k.Kid)
		}
		keys = append(keys, Key{ID: k.Kid, Public: pub})
	}
	return NewKeySet(keys, "")
}

// Claims are an access token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Role   string `json:"role"`
	Region string `json:"region"`
	KSID   string `json:"ksid"`
}

// Subject is what a token says about its user.
type Subject struct {
	UserID shardkey.ID
	KSID   shardkey.KeyspaceID
	Role   string
	Region string
}

// Config fixes the issuer, audience and lifetime of tokens.
type Config struct {
	Issuer   string
	Audience string
	TTL      time.Duration
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
		return errors.New("authtoken: Issuer is required")
	case c.Audience == "":
		return errors.New("authtoken: Audience is required")
	case c.TTL <= 0:
		return errors.New("authtoken: TTL must be positive")
	case c.Leeway < 0:
		return errors.New("authtoken: Leeway must not be negative")
	case c.CacheSize < 0:
		return errors.New("authtoken: CacheSize must not be negative")
	}
	return nil
}

// Tokens issues and verifies access tokens with one key set.
type Tokens struct {
	cfg    Config
	keys   *KeySet
	now    func() time.Time
	parser *jwt.Parser
	cache  *verified
}

// New returns a Tokens. now may be nil (time.Now).
func New(cfg Config, keys *KeySet, now func() time.Time) (*Tokens, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, errors.New("authtoken: no keys")
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
	return &Tokens{cfg: cfg, keys: keys, now: now, parser: p, cache: newVerified(cfg.CacheSize)}, nil
}

// Keys returns the key set (for the JWKS endpoint).
func (t *Tokens) Keys() *KeySet { return t.keys }

// TTL is the lifetime of issued tokens.
func (t *Tokens) TTL() time.Duration { return t.cfg.TTL }

// Issue signs an access token for s; it returns the token and its expiry.
func (t *Tokens) Issue(s Subject) (string, time.Time, error) {
	if t.keys.signing == nil {
		return "", time.Time{}, ErrNoSigningKey
	}
	now := t.now().Truncate(time.Second)
	exp := now.Add(t.cfg.TTL)
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.cfg.Issuer,
			Subject:   s.UserID.String(),
			Audience:  jwt.ClaimStrings{t.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		Role:   s.Role,
		Region: s.Region,
		KSID:   s.KSID.String(),
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = t.keys.signing.ID
	tok.Header["typ"] = TokenType
	signed, err := tok.SignedString(t.keys.signing.Private)
	return signed, exp, err
}

// Verify checks a token's signature (EdDSA only, by kid), type, issuer, audience, expiry and subject.
// A token verified before is answered from the cache until it expires: the cache is keyed by the whole
// token, so only the same signed bytes hit it.
func (t *Tokens) Verify(token string) (Subject, error) {
	now := t.now()
	if s, ok := t.cache.get(token, now.Add(-t.cfg.Leeway)); ok {
		return s, nil
	}
	s, exp, err := t.verify(token)
	if err == nil {
		t.cache.put(token, s, exp)
	}
	return s, err
}

func (t *Tokens) verify(token string) (Subject, time.Time, error) {
	s, c, err := t.parse(token)
	if err != nil {
		return Subject{}, time.Time{}, err
	}
	return s, c.ExpiresAt.Time, nil
}

func (t *Tokens) parse(token string) (Subject, *Claims, error) {
	var c Claims
	_, err := t.parser.ParseWithClaims(token, &c, func(tok *jwt.Token) (any, error) {
		if typ, _ := tok.Header["typ"].(string); !strings.EqualFold(typ, TokenType) {
			return nil, errors.New("not an access token")
		}
		kid, _ := tok.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		k, ok := t.keys.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		return k.Public, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Subject{}, nil, fmt.Errorf("%w: %w", ErrExpired, err)
		}
		return Subject{}, nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	id, err := shardkey.ParseIDOfKind(c.Subject, shardkey.KindUser)
	if err != nil {
		return Subject{}, nil, fmt.Errorf("%w: sub: %w", ErrInvalidToken, err)
	}
	k, err := shardkey.ParseKeyspaceID(c.KSID)
	if err != nil {
		return Subject{}, nil, fmt.Errorf("%w: ksid: %w", ErrInvalidToken, err)
	}
	if c.Role == "" || c.Region == "" {
		return Subject{}, nil, fmt.Errorf("%w: role and region are required", ErrInvalidToken)
	}
	return Subject{UserID: id, KSID: k, Role: c.Role, Region: c.Region}, &c, nil
}
