package accesstoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func subject(t *testing.T) Subject {
	t.Helper()
	k := shardkey.NewKeyspaceID(0x40, []byte("someone"))
	id, err := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, k)
	if err != nil {
		t.Fatal(err)
	}
	return Subject{UserID: id, KSID: k, Role: "client", Region: "eu-west"}
}

func newTokens(t *testing.T, cfg Config, keys ...Key) (*Tokens, *clock) {
	t.Helper()
	if len(keys) == 0 {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = []Key{k}
	}
	ks, err := NewKeySet(keys, keys[len(keys)-1].ID)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	tok, err := New(cfg, ks, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return tok, c
}

var testCfg = Config{Issuer: "https://issuer.test", Audience: "meridian-api", TTL: 15 * time.Minute, Leeway: 10 * time.Second, CacheSize: 64}

func TestIssueVerify(t *testing.T) {
	for _, cacheSize := range []int{0, 64} {
		cfg := testCfg
		cfg.CacheSize = cacheSize
		tokens, clk := newTokens(t, cfg)
		s := subject(t)
		tok, exp, err := tokens.Issue(s)
		if err != nil {
			t.Fatal(err)
		}
		if !exp.Equal(clk.t.Add(15 * time.Minute)) {
			t.Fatalf("exp = %v", exp)
		}
		for range 2 { // the second answer may come from the cache
			got, err := tokens.Verify(tok)
			if err != nil || got != s {
				t.Fatalf("Verify = %+v, %v; want %+v", got, err, s)
			}
		}
		clk.t = exp.Add(11 * time.Second) // past exp and the leeway: expired, cached or not
		if _, err := tokens.Verify(tok); !errors.Is(err, ErrExpired) {
			t.Fatalf("cache %d: expired token: %v", cacheSize, err)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	tokens, clk := newTokens(t, testCfg)
	s := subject(t)
	good, _, _ := tokens.Issue(s)
	other, _ := newTokens(t, Config{Issuer: "https://issuer.test", Audience: "another-api", TTL: time.Minute})
	wrongAud, _, _ := other.Issue(s)
	otherIss, _ := newTokens(t, Config{Issuer: "https://evil.test", Audience: "meridian-api", TTL: time.Minute}, tokens.keys.keys[tokens.keys.SigningKeyID()])
	wrongIss, _, _ := otherIss.Issue(s)
	// alg: none, with the claims of a good token.
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+tokens.keys.SigningKeyID()+`"}`)) + "." + parts[1] + "."
	// HS256 signed with the public key as secret (the classic key-confusion attack).
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "https://issuer.test", "aud": "meridian-api", "sub": s.UserID.String(), "exp": clk.t.Add(time.Minute).Unix(), "role": "admin", "region": "eu-west", "ksid": s.KSID.String()})
	hs.Header["kid"] = tokens.keys.SigningKeyID()
	hs.Header["typ"] = TokenType
	hsTok, _ := hs.SignedString([]byte(tokens.keys.keys[tokens.keys.SigningKeyID()].Public))
	// A well-signed token without typ at+jwt (an ID token, say).
	k := tokens.keys.signing
	noTyp := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "https://issuer.test", "aud": "meridian-api", "sub": s.UserID.String(), "exp": clk.t.Add(time.Minute).Unix(), "iat": clk.t.Unix(), "role": "client", "region": "eu-west", "ksid": s.KSID.String()})
	noTyp.Header["kid"] = k.ID
	noTypTok, _ := noTyp.SignedString(k.Private)
	// Unknown kid.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	unk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"exp": clk.t.Add(time.Minute).Unix()})
	unk.Header["kid"], unk.Header["typ"] = "nobody", TokenType
	unkTok, _ := unk.SignedString(stranger)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"role":"admin"}`)) + "." + parts[2]

	for name, tok := range map[string]string{
		"wrong audience":      wrongAud,
		"wrong issuer":        wrongIss,
		"alg none":            none,
		"HS256 key confusion": hsTok,
		"no typ":              noTypTok,
		"unknown kid":         unkTok,
		"tampered claims":     tampered,
		"garbage":             "not.a.token",
		"empty":               "",
		"refresh token":       "mrt_tfm_0123456789abcdefghjkmnpqrstvwxyz.c2VjcmV0",
	} {
		if _, err := tokens.Verify(tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want ErrInvalidToken", name, err)
		}
	}
	// A token from the future is not valid yet.
	clk.t = clk.t.Add(-time.Hour)
	if _, err := tokens.Verify(good); err == nil {
		t.Error("a token issued in the future was accepted")
	}
}

func TestKeyRotationAndJWKS(t *testing.T) {
	dir := t.TempDir()
	old, _ := GenerateKey()
	if err := WriteKeyFile(filepath.Join(dir, "2026-01-01.pem"), old); err != nil {
		t.Fatal(err)
	}
	ks1, err := LoadKeyDir(dir)
	if err != nil || ks1.SigningKeyID() != old.ID {
		t.Fatalf("LoadKeyDir: %v", err)
	}
	t1, _ := New(testCfg, ks1, nil)
	before, _, _ := t1.Issue(subject(t))
	next, _ := GenerateKey()
	if err := WriteKeyFile(filepath.Join(dir, "2026-06-01.pem"), next); err != nil {
		t.Fatal(err)
	}
	ks2, err := LoadKeyDir(dir)
	if err != nil || ks2.SigningKeyID() != next.ID {
		t.Fatalf("after rotation the newest file must sign: %v", err)
	}
	t2, _ := New(testCfg, ks2, nil)
	if _, err := t2.Verify(before); err != nil {
		t.Fatalf("a token signed with the previous key no longer verifies: %v", err)
	}
	after, _, _ := t2.Issue(subject(t))
	// A router holding only the published keys verifies both.
	pub, err := ParseJWKS(ks2.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := New(testCfg, pub, nil)
	for _, tok := range []string{before, after} {
		if _, err := verifier.Verify(tok); err != nil {
			t.Fatalf("verify with the JWKS: %v", err)
		}
	}
	if _, _, err := verifier.Issue(subject(t)); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("a verify-only set issued a token: %v", err)
	}
	if strings.Contains(string(ks2.JWKS()), `"d"`) {
		t.Fatal("the JWKS contains private key material")
	}
	for name, data := range map[string]string{
		"not json":   "{",
		"bad x":      `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"!!","kid":"a"}]}`,
		"kid lies":   `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(next.Public) + `","kid":"other"}]}`,
		"no ed25519": `{"keys":[{"kty":"RSA","n":"x","e":"AQAB","kid":"r"}]}`,
	} {
		if _, err := ParseJWKS([]byte(data)); err == nil {
			t.Errorf("%s: ParseJWKS accepted it", name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "zz.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyDir(dir); err == nil {
		t.Fatal("a bad key file was accepted")
	}
	if _, err := LoadKeyDir(t.TempDir()); err == nil {
		t.Fatal("an empty key folder was accepted")
	}
}

func TestCacheIsBounded(t *testing.T) {
	cfg := testCfg
	cfg.CacheSize = 32
	tokens, _ := newTokens(t, cfg)
	for range 200 {
		tok, _, _ := tokens.Issue(subject(t))
		if _, err := tokens.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for i := range tokens.cache.shards {
		n += len(tokens.cache.shards[i].m)
	}
	if n > 32 {
		t.Fatalf("cache holds %d entries, bound 32", n)
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, size := range []int{0, 1024} {
		name := "uncached"
		if size > 0 {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			k, _ := GenerateKey()
			ks, _ := NewKeySet([]Key{k}, k.ID)
			cfg := testCfg
			cfg.CacheSize = size
			tokens, _ := New(cfg, ks, nil)
			id, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, 0x4000000000000001)
			tok, _, _ := tokens.Issue(Subject{UserID: id, KSID: 0x4000000000000001, Role: "client", Region: "eu-west"})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tokens.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
