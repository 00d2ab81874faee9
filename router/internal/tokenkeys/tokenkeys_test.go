package tokenkeys

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// source serves a JWKS document and counts fetches.
type source struct {
	mu      sync.Mutex
	doc     []byte
	err     error
	fetches atomic.Int32
}

func (s *source) JWKS(context.Context) ([]byte, error) {
	s.fetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doc, s.err
}

func (s *source) set(doc []byte) {
	s.mu.Lock()
	s.doc = doc
	s.mu.Unlock()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	v      *Verifier
	src    *source
	clk    *clock
	key    tokenissue.Key
	keys   *tokenissue.SigningKeys
	tokens *tokenissue.Issuer
	sub    accesstoken.Subject
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	k, _ := tokenissue.GenerateKey()
	ks, _ := tokenissue.NewSigningKeys(k)
	clk := &clock{t: time.Unix(1_900_000_000, 0)}
	tokens, err := tokenissue.New(tokenissue.Config{Issuer: "iss", Audience: "aud", TTL: time.Hour}, ks, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Issuer, cfg.Audience, cfg.Leeway = "iss", "aud", 0
	src := &source{doc: ks.JWKS()}
	v, err := New(cfg, src, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	ksid := shardkey.NewKeyspaceID(0x40, []byte("u"))
	id, _ := shardkey.NewGenerator(clk.now, nil).New(shardkey.KindUser, ksid)
	return &fixture{v: v, src: src, clk: clk, key: k, keys: ks, tokens: tokens,
		sub: accesstoken.Subject{UserID: id, KSID: ksid, Role: "client", Region: "eu-west"}}
}

func (f *fixture) token(t *testing.T, tk *tokenissue.Issuer) string {
	t.Helper()
	s, _, err := tk.Issue(f.sub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNoKeysYet(t *testing.T) {
	f := newFixture(t)
	if _, err := f.v.Verify(context.Background(), f.token(t, f.tokens)); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("got %v, want ErrNoKeys", err)
	}
}

func TestVerifyCachesUntilExpiry(t *testing.T) {
	f := newFixture(t)
	if err := f.v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, f.tokens)
	for range 3 {
		id, err := f.v.Verify(context.Background(), tok)
		if err != nil || id.Subject != f.sub || id.UserID != f.sub.UserID.String() {
			t.Fatalf("Verify: %+v, %v", id, err)
		}
	}
	if f.v.Len() != 1 {
		t.Fatalf("%d cached", f.v.Len())
	}
	f.clk.add(2 * time.Hour)
	if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, accesstoken.ErrExpired) {
		t.Fatalf("a cached token outlived its expiry: %v", err)
	}
}

func TestUnknownKidRefetchesAtMostOncePerMinRefetch(t *testing.T) {
	f := newFixture(t)
	if err := f.v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	base := f.src.fetches.Load()
	k2, _ := tokenissue.GenerateKey()
	other, _ := tokenissue.NewSigningKeys(k2)
	otherTokens, _ := tokenissue.New(tokenissue.Config{Issuer: "iss", Audience: "aud", TTL: time.Hour}, other, f.clk.now)
	stranger := f.token(t, otherTokens)
	for range 5 {
		if _, err := f.v.Verify(context.Background(), stranger); !errors.Is(err, accesstoken.ErrInvalidToken) {
			t.Fatalf("a token of an unpublished key passed: %v", err)
		}
	}
	if got := f.src.fetches.Load() - base; got != 1 {
		t.Fatalf("%d fetches for one unknown kid in a burst, want 1", got)
	}
	// The nodes publish the key: after MinRefetch, the next token with it triggers a fetch and passes.
	both, _ := tokenissue.NewSigningKeys(k2, f.key.Verification())
	f.src.set(both.JWKS())
	f.clk.add(DefaultConfig().MinRefetch)
	if _, err := f.v.Verify(context.Background(), stranger); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

func TestRetiredKeyEmptiesTheCache(t *testing.T) {
	f := newFixture(t)
	if err := f.v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, f.tokens)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	k2, _ := tokenissue.GenerateKey()
	only2, _ := tokenissue.NewSigningKeys(k2)
	f.src.set(only2.JWKS())
	if err := f.v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(context.Background(), tok); err == nil {
		t.Fatal("a token of a retired key still passes")
	}
}

func TestBadJWKSKeepsTheKeysInService(t *testing.T) {
	f := newFixture(t)
	if err := f.v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	f.src.set([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"bad","kid":"k"}]}`))
	if err := f.v.fetch(context.Background(), false); err == nil {
		t.Fatal("a bad JWKS was accepted")
	}
	if _, err := f.v.Verify(context.Background(), f.token(t, f.tokens)); err != nil {
		t.Fatalf("the keys in service were dropped: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	f := newFixture(t)
	f.v.cfg.CacheSize = 64
	if err := f.v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := f.v.Verify(context.Background(), f.token(t, f.tokens)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.v.Len(); n > 64 {
		t.Fatalf("%d entries in a cache of 64", n)
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(&testing.T{})
	_ = fx.v.fetch(context.Background(), false)
	good, _, _ := fx.tokens.Issue(fx.sub)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := fx.v.Verify(context.Background(), tok)
		if err == nil && id.Subject != fx.sub {
			t.Fatalf("Verify(%q) passed with %+v", tok, id)
		}
	})
}

func BenchmarkVerifyCached(b *testing.B) {
	fx := newFixture(&testing.T{})
	_ = fx.v.fetch(context.Background(), false)
	tok, _, _ := fx.tokens.Issue(fx.sub)
	_, _ = fx.v.Verify(context.Background(), tok)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = fx.v.Verify(context.Background(), tok)
	}
}

func BenchmarkVerifyUncached(b *testing.B) {
	fx := newFixture(&testing.T{})
	_ = fx.v.fetch(context.Background(), false)
	tok, _, _ := fx.tokens.Issue(fx.sub)
	// The verifier in service with its cache off: the signature check a token costs the first time.
	cfg := accesstoken.Config{Issuer: fx.v.cfg.Issuer, Audience: fx.v.cfg.Audience, Leeway: fx.v.cfg.Leeway}
	uncached, _ := accesstoken.NewVerifier(cfg, fx.v.state.Load().verifier.Keys(), fx.clk.now)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = uncached.Verify(tok)
	}
}
