package accesstoken_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func subject(t testing.TB) accesstoken.Subject {
	t.Helper()
	k := shardkey.NewKeyspaceID(0x40, []byte("someone"))
	id, err := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, k)
	if err != nil {
		t.Fatal(err)
	}
	return accesstoken.Subject{UserID: id, KSID: k, Role: "client", Region: "eu-west"}
}

var (
	testCfg   = accesstoken.Config{Issuer: "https://issuer.test", Audience: "meridian-api", Leeway: 10 * time.Second, CacheSize: 64}
	issueCfg  = tokenissue.Config{Issuer: "https://issuer.test", Audience: "meridian-api", TTL: 15 * time.Minute}
	startTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
)

// fixture is a node's issuer and a verifier of its keys, on one clock.
type fixture struct {
	issuer   *tokenissue.Issuer
	verifier *accesstoken.Verifier
	key      tokenissue.Key
	clk      *clock
}

func newFixture(t testing.TB, cfg accesstoken.Config) *fixture {
	t.Helper()
	k, err := tokenissue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tokenissue.NewSigningKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: startTime}
	iss, err := tokenissue.New(issueCfg, keys, c.now)
	if err != nil {
		t.Fatal(err)
	}
	v, err := accesstoken.NewVerifier(cfg, keys.Public(), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{issuer: iss, verifier: v, key: k, clk: c}
}

func TestIssueVerify(t *testing.T) {
	for _, cacheSize := range []int{0, 64} {
		cfg := testCfg
		cfg.CacheSize = cacheSize
		f := newFixture(t, cfg)
		s := subject(t)
		tok, exp, err := f.issuer.Issue(s)
		if err != nil {
			t.Fatal(err)
		}
		if !exp.Equal(f.clk.t.Add(15 * time.Minute)) {
			t.Fatalf("exp = %v", exp)
		}
		for range 2 { // the second answer may come from the cache
			got, err := f.verifier.VerifyToken(tok)
			if err != nil || got.Subject != s || got.UserID != s.UserID.String() || !got.Expires.Equal(exp) {
				t.Fatalf("Verify = %+v, %v; want %+v", got, err, s)
			}
		}
		f.clk.t = exp.Add(11 * time.Second) // past exp and the leeway: expired, cached or not
		if _, err := f.verifier.Verify(tok); !errors.Is(err, accesstoken.ErrExpired) {
			t.Fatalf("cache %d: expired token: %v", cacheSize, err)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t, testCfg)
	s := subject(t)
	good, _, _ := f.issuer.Issue(s)
	kid := f.key.ID
	otherAud, _ := tokenissue.New(tokenissue.Config{Issuer: "https://issuer.test", Audience: "another-api", TTL: time.Minute}, f.issuer.Keys(), f.clk.now)
	wrongAud, _, _ := otherAud.Issue(s)
	otherIss, _ := tokenissue.New(tokenissue.Config{Issuer: "https://evil.test", Audience: "meridian-api", TTL: time.Minute}, f.issuer.Keys(), f.clk.now)
	wrongIss, _, _ := otherIss.Issue(s)
	// alg: none, with the claims of a good token.
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`)) + "." + parts[1] + "."
	// HS256 signed with the public key as secret (the classic key-confusion attack).
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "https://issuer.test", "aud": "meridian-api", "sub": s.UserID.String(), "exp": f.clk.t.Add(time.Minute).Unix(), "role": "admin", "region": "eu-west", "ksid": s.KSID.String()})
	hs.Header["kid"] = kid
	hs.Header["typ"] = accesstoken.TokenType
	hsTok, _ := hs.SignedString([]byte(f.key.Public))
	// A well-signed token without typ at+jwt (an ID token, say).
	noTyp := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "https://issuer.test", "aud": "meridian-api", "sub": s.UserID.String(), "exp": f.clk.t.Add(time.Minute).Unix(), "iat": f.clk.t.Unix(), "role": "client", "region": "eu-west", "ksid": s.KSID.String()})
	noTyp.Header["kid"] = kid
	noTypTok, _ := noTyp.SignedString(f.key.Private)
	// Unknown kid.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	unk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"exp": f.clk.t.Add(time.Minute).Unix()})
	unk.Header["kid"], unk.Header["typ"] = "nobody", accesstoken.TokenType
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
		_, err := f.verifier.Verify(tok)
		if !errors.Is(err, accesstoken.ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want ErrInvalidToken", name, err)
		}
		// Only a token that names a key the set lacks says so: the router refetches keys on it.
		if errors.Is(err, accesstoken.ErrUnknownKey) != (name == "unknown kid") {
			t.Errorf("%s: Verify = %v, ErrUnknownKey only for an unknown kid", name, err)
		}
	}
	// A token from the future is not valid yet.
	f.clk.t = f.clk.t.Add(-time.Hour)
	if _, err := f.verifier.Verify(good); err == nil {
		t.Error("a token issued in the future was accepted")
	}
}

func TestJWKS(t *testing.T) {
	f := newFixture(t, testCfg)
	next, _ := tokenissue.GenerateKey()
	both, err := tokenissue.NewSigningKeys(next, f.key.Verification())
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := f.issuer.Issue(subject(t))
	iss2, _ := tokenissue.New(issueCfg, both, f.clk.now)
	after, _, _ := iss2.Issue(subject(t))
	// A router holding only the published keys verifies both.
	pub, err := accesstoken.ParseJWKS(both.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := accesstoken.NewVerifier(testCfg, pub, f.clk.now)
	for _, tok := range []string{before, after} {
		if _, err := verifier.Verify(tok); err != nil {
			t.Fatalf("verify with the JWKS: %v", err)
		}
	}
	if strings.Contains(string(both.JWKS()), `"d"`) {
		t.Fatal("the JWKS contains private key material")
	}
	for name, data := range map[string]string{
		"not json":   "{",
		"bad x":      `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"!!","kid":"a"}]}`,
		"kid lies":   `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(next.Public) + `","kid":"other"}]}`,
		"no ed25519": `{"keys":[{"kty":"RSA","n":"x","e":"AQAB","kid":"r"}]}`,
	} {
		if _, err := accesstoken.ParseJWKS([]byte(data)); err == nil {
			t.Errorf("%s: ParseJWKS accepted it", name)
		}
	}
}

// WithKeys keeps the verified tokens while the key set only grows, and forgets them when a key is
// retired.
func TestWithKeys(t *testing.T) {
	f := newFixture(t, testCfg)
	tok, _, _ := f.issuer.Issue(subject(t))
	if _, err := f.verifier.Verify(tok); err != nil {
		t.Fatal(err)
	}
	next, _ := tokenissue.GenerateKey()
	grown, _ := tokenissue.NewSigningKeys(next, f.key.Verification())
	v2, err := f.verifier.WithKeys(grown.Public())
	if err != nil {
		t.Fatal(err)
	}
	if v2.Len() != 1 {
		t.Fatalf("a key was added and the cache holds %d tokens, want 1", v2.Len())
	}
	onlyNext, _ := tokenissue.NewSigningKeys(next)
	v3, _ := v2.WithKeys(onlyNext.Public())
	if v3.Len() != 0 {
		t.Fatalf("a key was retired and the cache holds %d tokens", v3.Len())
	}
	if _, err := v3.Verify(tok); !errors.Is(err, accesstoken.ErrUnknownKey) {
		t.Fatalf("a token of a retired key: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	cfg := testCfg
	cfg.CacheSize = 32
	f := newFixture(t, cfg)
	for range 200 {
		tok, _, _ := f.issuer.Issue(subject(t))
		if _, err := f.verifier.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.verifier.Len(); n > 32 {
		t.Fatalf("cache holds %d entries, bound 32", n)
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f, testCfg)
	s := subject(f)
	good, _, _ := fx.issuer.Issue(s)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := fx.verifier.Verify(tok)
		if err == nil && got != s {
			t.Fatalf("Verify(%q) passed with %+v", tok, got)
		}
		if err != nil && !errors.Is(err, accesstoken.ErrInvalidToken) && !errors.Is(err, accesstoken.ErrExpired) {
			t.Fatalf("Verify(%q): %v wraps neither ErrInvalidToken nor ErrExpired", tok, err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	for _, size := range []int{0, 1024} {
		name := "uncached"
		if size > 0 {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			k, _ := tokenissue.GenerateKey()
			ks, _ := tokenissue.NewSigningKeys(k)
			cfg := testCfg
			cfg.CacheSize = size
			iss, _ := tokenissue.New(issueCfg, ks, nil)
			v, _ := accesstoken.NewVerifier(cfg, ks.Public(), nil)
			id, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, 0x4000000000000001)
			tok, _, _ := iss.Issue(accesstoken.Subject{UserID: id, KSID: 0x4000000000000001, Role: "client", Region: "eu-west"})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A token names its session, and a token marked revoked is refused until it expires; others are not.
func TestFamilyAndRevoke(t *testing.T) {
	f := newFixture(t, testCfg)
	s := subject(t)
	fam, err := shardkey.NewGenerator(nil, nil).New(shardkey.KindTokenFamily, s.KSID)
	if err != nil {
		t.Fatal(err)
	}
	s.Session = fam
	tok, _, err := f.issuer.Issue(s)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := f.issuer.Issue(subject(t))
	if got, err := f.verifier.Verify(tok); err != nil || got.Session != fam {
		t.Fatalf("sid: %v %v, want %s", got.Session, err, fam)
	}
	f.verifier.Revoke(tok)
	f.verifier.Revoke("not a token") // ignored
	if _, err := f.verifier.Verify(tok); !errors.Is(err, accesstoken.ErrRevoked) || !errors.Is(err, accesstoken.ErrInvalidToken) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := f.verifier.Verify(other); err != nil {
		t.Fatalf("another token after a revocation: %v", err)
	}
	// A token that names a session of the wrong kind is refused.
	bad := s
	bad.Session = s.UserID
	badTok, _, _ := f.issuer.Issue(bad)
	if _, err := f.verifier.Verify(badTok); !errors.Is(err, accesstoken.ErrInvalidToken) {
		t.Fatalf("fid of the wrong kind: %v", err)
	}
}
