// Package tokenissue issues Meridian's access tokens and holds their private keys: key generation,
// key files, key rotation, signing. Only the API nodes issue tokens; the edge router verifies them with
// internal/accesstoken and must never link this package (router/deps_test.go checks it). It lives
// under internal/ rather than api/internal because the local cluster launcher writes the nodes' key
// files and the router's test harness signs tokens as a node would.
package tokenissue

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/8thdegree/meridian/internal/accesstoken"
)

// Key is an Ed25519 signing key.
type Key struct {
	ID      string
	Public  ed25519.PublicKey
	Private ed25519.PrivateKey
}

// Verification is the key's public half, as verifiers hold it.
func (k Key) Verification() accesstoken.Key { return accesstoken.Key{ID: k.ID, Public: k.Public} }

// GenerateKey makes a new Ed25519 key.
func GenerateKey() (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: accesstoken.KeyID(pub), Public: pub, Private: priv}, nil
}

// WriteKeyFile writes a private key as PKCS#8 PEM with mode 0600.
func WriteKeyFile(path string, k Key) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// SigningKeys is the key that signs new tokens and the set of keys the node publishes (the signing
// key and older keys whose tokens still verify). It is immutable.
type SigningKeys struct {
	signing Key
	public  *accesstoken.KeySet
}

// NewSigningKeys publishes signing and the still-verifying keys others.
func NewSigningKeys(signing Key, others ...accesstoken.Key) (*SigningKeys, error) {
	if len(signing.Private) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("tokenissue: signing key %q has no private half", signing.ID)
	}
	pub, err := accesstoken.NewKeySet(append(slices.Clip(others), signing.Verification()))
	if err != nil {
		return nil, err
	}
	return &SigningKeys{signing: signing, public: pub}, nil
}

// SigningKeyID is the kid of new tokens.
func (s *SigningKeys) SigningKeyID() string { return s.signing.ID }

// Public is the published key set.
func (s *SigningKeys) Public() *accesstoken.KeySet { return s.public }

// JWKS is the published key set as a JWKS document (no private key material).
func (s *SigningKeys) JWKS() []byte { return s.public.JWKS() }

// LoadKeyDir reads every *.pem (PKCS#8 Ed25519 private key) in dir. The signing key is the one whose
// file name sorts last (name keys by date: 2026-11-26.pem), so rotation is: add a newer file, restart or
// reload; the older keys keep verifying tokens until their files are removed.
func LoadKeyDir(dir string) (*SigningKeys, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("tokenissue: no *.pem signing keys in %s", dir)
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
	var older []accesstoken.Key
	for _, k := range keys[:len(keys)-1] {
		older = append(older, k.Verification())
	}
	return NewSigningKeys(keys[len(keys)-1], older...)
}

func readKeyFile(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return Key{}, fmt.Errorf("tokenissue: %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("tokenissue: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("tokenissue: %s: not an Ed25519 key", path)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return Key{ID: accesstoken.KeyID(pub), Public: pub, Private: priv}, nil
}

// Config fixes the issuer, audience and lifetime of tokens.
type Config struct {
	Issuer   string
	Audience string
	TTL      time.Duration
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Issuer == "":
		return errors.New("tokenissue: Issuer is required")
	case c.Audience == "":
		return errors.New("tokenissue: Audience is required")
	case c.TTL <= 0:
		return errors.New("tokenissue: TTL must be positive")
	}
	return nil
}

// Issuer signs access tokens.
type Issuer struct {
	cfg  Config
	keys *SigningKeys
	now  func() time.Time
}

// New returns an Issuer. now may be nil (time.Now).
func New(cfg Config, keys *SigningKeys, now func() time.Time) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, errors.New("tokenissue: no keys")
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{cfg: cfg, keys: keys, now: now}, nil
}

// Keys returns the signing keys (their JWKS is what the node publishes).
func (i *Issuer) Keys() *SigningKeys { return i.keys }

// TTL is the lifetime of issued tokens.
func (i *Issuer) TTL() time.Duration { return i.cfg.TTL }

// Issue signs an access token for s; it returns the token and its expiry.
func (i *Issuer) Issue(s accesstoken.Subject) (string, time.Time, error) {
	now := i.now().Truncate(time.Second)
	exp := now.Add(i.cfg.TTL)
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	c := accesstoken.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Subject:   s.UserID.String(),
			Audience:  jwt.ClaimStrings{i.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		Role:   s.Role,
		Region: s.Region,
		KSID:   s.KSID.String(),

		EmailVerified: s.EmailVerified,
	}
	if !s.AuthTime.IsZero() {
		c.AuthTime = jwt.NewNumericDate(s.AuthTime)
	}
	if !s.Session.IsZero() {
		c.SessionID = s.Session.String()
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = i.keys.signing.ID
	tok.Header["typ"] = accesstoken.TokenType
	signed, err := tok.SignedString(i.keys.signing.Private)
	return signed, exp, err
}
