package accounts

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/mailer"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestCredentialFormats(t *testing.T) {
	gen := shardkey.NewGenerator(nil, nil)
	k := shardkey.NewKeyspaceID(0x40, []byte("u"))
	fam, _ := gen.New(shardkey.KindTokenFamily, k)
	keyID, _ := gen.New(shardkey.KindAPIKey, k)

	tok, err := newRefreshToken(fam)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseRefreshToken(tok); err != nil || got != fam {
		t.Fatalf("refresh round trip: %v", err)
	}
	key, secret, err := newAPIKey(keyID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseAPIKey(key); err != nil || got != keyID || !strings.HasSuffix(key, "_"+secret) {
		t.Fatalf("api key round trip: %v", err)
	}
	if tok2, _ := newRefreshToken(fam); tok2 == tok {
		t.Error("two refresh tokens are equal")
	}
	for name, bad := range map[string]string{
		"empty":        "",
		"api key":      key,
		"no prefix":    strings.TrimPrefix(tok, refreshPrefix),
		"wrong kind":   refreshPrefix + keyID.String() + tok[len(refreshPrefix)+idTextLen:],
		"bad sep":      strings.Replace(tok, ".", "_", 1),
		"short secret": tok[:len(tok)-1],
		"long":         tok + "A",
		"padding":      tok[:len(tok)-1] + "=",
		"uppercase id": refreshPrefix + strings.ToUpper(fam.String()) + tok[len(refreshPrefix)+idTextLen:],
	} {
		if _, err := parseRefreshToken(bad); !errors.Is(err, errMalformed) {
			t.Errorf("refresh %s: %v", name, err)
		}
	}
	for name, bad := range map[string]string{
		"refresh":    tok,
		"wrong kind": apiKeyPrefix + fam.String() + key[len(apiKeyPrefix)+idTextLen:],
		"bad sep":    key[:len(apiKeyPrefix)+idTextLen] + "." + secret,
		"short":      key[:len(key)-2],
	} {
		if _, err := parseAPIKey(bad); !errors.Is(err, errMalformed) {
			t.Errorf("api key %s: %v", name, err)
		}
	}
	if len(secretHash(tok)) != 32 {
		t.Error("secretHash is not SHA-256")
	}
}

func TestHasher(t *testing.T) {
	ctx := context.Background()
	h, err := newHasher(testParams, 1)
	if err != nil {
		t.Fatal(err)
	}
	phc, err := h.hash(ctx, "a good long password")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pw, phc         string
		ok, stale, fail bool
	}{
		{"a good long password", phc, true, false, false},
		{"a wrong password", phc, false, false, false},
		{"a good long password", "", false, false, false}, // no user: the dummy hash, never a match
		{"x", "$argon2id$v=19$broken", false, false, true},
	} {
		ok, stale, err := h.check(ctx, tc.pw, tc.phc)
		if ok != tc.ok || stale != tc.stale || (err != nil) != tc.fail {
			t.Errorf("check(%q, %.20q): %v %v %v", tc.pw, tc.phc, ok, stale, err)
		}
	}
	weaker := testParams
	weaker.Iterations = 2
	old, _ := argon2id.CreateHash("a good long password", &weaker)
	if ok, stale, err := h.check(ctx, "a good long password", old); !ok || !stale || err != nil {
		t.Errorf("old parameters: %v %v %v", ok, stale, err)
	}
	// A full hasher makes callers wait, and gives up with their context.
	h.slots <- struct{}{}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.hash(cctx, "pw"); !errors.Is(err, context.Canceled) {
		t.Errorf("hash with a full hasher and a cancelled context: %v", err)
	}
	<-h.slots
}

func TestConfigValidate(t *testing.T) {
	key, _ := tokenissue.GenerateKey()
	ks, _ := tokenissue.NewSigningKeys(key)
	tokens, _ := tokenissue.New(tokenissue.Config{Issuer: "i", Audience: "a", TTL: time.Minute}, ks, nil)
	good := func() Config {
		c := DefaultConfig()
		c.Tokens, c.EmailPepper, c.StateKey, c.Limiter = tokens, testPepper, testStateKey, ratelimit.New(nil, nil)
		c.RedirectBaseURL = "https://api.example.com"
		c.Mailer = &mailer.Dir{}
		c.OAuth = map[string]oauth.ProviderConfig{oauth.ProviderGoogle: oauth.GoogleProvider("id", "secret"), oauth.ProviderGitHub: oauth.GitHubProvider("id", "secret")}
		return c
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		field  string
		change func(*Config)
	}{
		{"Tokens", func(c *Config) { c.Tokens = nil }},
		{"EmailPepper", func(c *Config) { c.EmailPepper = []byte("short") }},
		{"StateKey", func(c *Config) { c.StateKey = nil }},
		{"RefreshTTL", func(c *Config) { c.RefreshTTL = time.Second }},
		{"SessionMaxAge", func(c *Config) { c.SessionMaxAge = c.RefreshTTL - time.Hour }},
		{"Limiter", func(c *Config) { c.Limiter = nil }},
		{"AccountBackoff", func(c *Config) {
			c.AccountBackoff = ratelimit.Backoff{Free: 1, Base: 0, Max: time.Minute, Window: time.Hour}
		}},
		{"IPBackoff", func(c *Config) {
			c.IPBackoff = ratelimit.Backoff{Free: 1, Base: time.Hour, Max: time.Minute, Window: time.Hour}
		}},
		{"PasswordParams", func(c *Config) { p := testParams; p.Memory = 1024; c.PasswordParams = &p }},
		{"RedirectBaseURL", func(c *Config) { c.RedirectBaseURL = "api.example.com" }},
		{"Mailer", func(c *Config) { c.Mailer = nil }},
		{"VerifyLinkURL", func(c *Config) { c.VerifyLinkURL = "javascript:alert(1)" }},
		{"VerifyTTL", func(c *Config) { c.VerifyTTL = time.Second }},
		{"ResendLimit", func(c *Config) { c.ResendLimit = ratelimit.Limit{Rate: 0, Period: time.Hour, Burst: 1} }},
		{`"facebook"`, func(c *Config) { c.OAuth["facebook"] = oauth.GoogleProvider("id", "s") }},
		{`OAuth["google"].ClientID`, func(c *Config) { c.OAuth[oauth.ProviderGoogle] = oauth.GoogleProvider("", "s") }},
		{`OAuth["google"].JWKSURL`, func(c *Config) {
			p := oauth.GoogleProvider("id", "s")
			p.JWKSURL = ""
			c.OAuth[oauth.ProviderGoogle] = p
		}},
		{`OAuth["github"].APIBaseURL`, func(c *Config) {
			p := oauth.GitHubProvider("id", "s")
			p.APIBaseURL = "ftp://x"
			c.OAuth[oauth.ProviderGitHub] = p
		}},
	} {
		c := good()
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	// Zero optional fields take defaults.
	c := Config{}.withDefaults()
	if c.RefreshTTL != DefaultRefreshTTL || c.AccountBackoff != DefaultAccountBackoff || c.IPBackoff != DefaultIPBackoff || c.PasswordParams == nil || c.HTTPClient == nil {
		t.Errorf("defaults: %+v", c)
	}
}

func TestMetaOf(t *testing.T) {
	s := &Service{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	for _, tc := range []struct{ xff, remote, want string }{
		{"203.0.113.7", "10.0.0.2:5555", "203.0.113.7"},
		{"6.6.6.6, 203.0.113.7", "10.0.0.2:5555", "203.0.113.7"}, // a forged first hop is ignored
		{"203.0.113.7, 10.0.0.9", "10.0.0.2:5555", "203.0.113.7"},
		{"2001:db8::1", "10.0.0.2:5555", "2001:db8::1"},
		{"::ffff:203.0.113.9", "10.0.0.2:5555", "203.0.113.9"},
		{"", "198.51.100.4:1234", "198.51.100.4"},
		{"6.6.6.6", "198.51.100.4:1234", "198.51.100.4"}, // not from a trusted proxy
		{"", "[2001:db8::2]:80", "2001:db8::2"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := s.metaOf(r).IP.String(); got != tc.want {
			t.Errorf("xff %q remote %q: %s, want %s", tc.xff, tc.remote, got, tc.want)
		}
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{
		"  Grace Hopper ":          "Grace Hopper",
		"":                         "grace",
		"\x00\x01":                 "grace",
		strings.Repeat("é", 250):   strings.Repeat("é", 200),
		"Line\nBreak\u0085Control": "LineBreakControl",
	} {
		if got := displayName(in, "grace@example.com"); got != want || nameProblem(got, maxName) != "" {
			t.Errorf("displayName(%q) = %q (%s)", in, got, nameProblem(got, maxName))
		}
	}
}
