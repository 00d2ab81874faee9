package accounts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
)

func TestRefreshAndLogout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	refresh := func(region, tok string) *apitest.Response {
		return e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": tok}})
	}
	logout := func(region, tok string) *apitest.Response {
		return e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/logout", Body: map[string]string{"refresh_token": tok}})
	}

	t.Run("rotation and reuse", func(t *testing.T) {
		b := e.register(t, "eu-west", uniqueEmail(t, "rotate"), authn.Client)
		k := b.User.ID.KeyspaceID()
		first := b.RefreshToken
		r := refresh("eu-west", first)
		var b2 tokenBundle
		r.JSON(t, &b2)
		if r.Status != 200 || b2.RefreshToken == first || b2.AccessToken == "" || b2.User.ID != b.User.ID {
			t.Fatalf("refresh: %d %s", r.Status, r.Body)
		}
		// Same family: the family ID is the token's routing part.
		if first[:len(refreshPrefix)+idTextLen] != b2.RefreshToken[:len(refreshPrefix)+idTextLen] {
			t.Errorf("new token in another family: %s vs %s", first, b2.RefreshToken)
		}
		var b3 tokenBundle
		r = refresh("eu-west", b2.RefreshToken)
		r.JSON(t, &b3)
		if r.Status != 200 {
			t.Fatalf("second refresh: %d %s", r.Status, r.Body)
		}
		// The first token is spent: presenting it again is a theft signal.
		if r := refresh("eu-west", first); r.Status != 401 || r.ErrorCode() != "unauthenticated" {
			t.Fatalf("reused token: %d %s", r.Status, r.Body)
		}
		// The whole family is gone, the newest token included.
		if r := refresh("eu-west", b3.RefreshToken); r.Status != 401 {
			t.Errorf("newest token after reuse: %d %s", r.Status, r.Body)
		}
		var reason string
		if err := e.pool(t, k).QueryRow(ctx, `SELECT revoked_reason FROM auth.refresh_token_families WHERE ksid = $1`, k.Bytes()).Scan(&reason); err != nil || reason != "refresh token reuse" {
			t.Errorf("family: %q %v", reason, err)
		}
		if got := e.actions(t, k); count(got, audit.ActionRefreshTokenReuse) != 1 {
			t.Errorf("audit: %v", got)
		}
		// Another login is another family, unaffected.
		if r := e.login(t, "us-east", b.User.Email, testPassword, clientIP()); r.Status != 200 {
			t.Errorf("login after a revoked family: %d", r.Status)
		} else {
			var b4 tokenBundle
			r.JSON(t, &b4)
			if r := refresh("eu-west", b4.RefreshToken); r.Status != 200 {
				t.Errorf("new family: %d %s", r.Status, r.Body)
			}
		}
	})

	t.Run("routing and bad tokens", func(t *testing.T) {
		b := e.register(t, "ap-south", uniqueEmail(t, "route"), authn.Freelancer)
		r := refresh("us-east", b.RefreshToken)
		if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "ap-south" {
			t.Errorf("refresh in the wrong region: %d %s", r.Status, r.Body)
		}
		if r := logout("eu-west", b.RefreshToken); r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "ap-south" {
			t.Errorf("logout in the wrong region: %d %s", r.Status, r.Body)
		}
		forged := b.RefreshToken[:len(b.RefreshToken)-43] + base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		for name, tok := range map[string]string{
			"forged secret": forged,
		} {
			if r := refresh("ap-south", tok); r.Status != 401 {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		for name, tok := range map[string]string{
			"empty":        "",
			"garbage":      "hello",
			"access token": b.AccessToken,
			"api key form": "mk_" + strings.TrimPrefix(b.RefreshToken, "mrt_"),
			"wrong kind":   "mrt_" + b.User.ID.String() + b.RefreshToken[len(refreshPrefix)+idTextLen:],
		} {
			if r := refresh("ap-south", tok); r.Status != 400 {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		if r := e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: `{"refresh_token": "x", "extra": 1}`}); r.Status != 400 {
			t.Errorf("unknown field: %d", r.Status)
		}
		// The original is still good: none of that touched it.
		if r := refresh("ap-south", b.RefreshToken); r.Status != 200 {
			t.Errorf("original after bad attempts: %d %s", r.Status, r.Body)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		b := e.register(t, "us-east", uniqueEmail(t, "expire"), authn.Client)
		e.clock.Advance(DefaultRefreshTTL + time.Minute)
		defer e.clock.Advance(-DefaultRefreshTTL - time.Minute)
		if r := refresh("us-east", b.RefreshToken); r.Status != 401 {
			t.Errorf("expired refresh token: %d %s", r.Status, r.Body)
		}
	})

	t.Run("logout", func(t *testing.T) {
		b := e.register(t, "us-east", uniqueEmail(t, "logout"), authn.Client)
		var b2 tokenBundle
		r := refresh("us-east", b.RefreshToken)
		r.JSON(t, &b2)
		if r := logout("us-east", b2.RefreshToken); r.Status != http.StatusNoContent || len(r.Body) != 0 {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}
		if r := refresh("us-east", b2.RefreshToken); r.Status != 401 {
			t.Errorf("refresh after logout: %d %s", r.Status, r.Body)
		}
		// Idempotent, and any token of the family (even a spent one) may end it.
		if r := logout("us-east", b2.RefreshToken); r.Status != http.StatusNoContent {
			t.Errorf("second logout: %d", r.Status)
		}
		if r := logout("us-east", b.RefreshToken); r.Status != http.StatusNoContent {
			t.Errorf("logout with a spent token: %d", r.Status)
		}
		if got := e.actions(t, b.User.ID.KeyspaceID()); count(got, audit.ActionLogout) != 1 {
			t.Errorf("audit: %v", got)
		}
		// A forged token of a live family does not end it.
		other := e.register(t, "us-east", uniqueEmail(t, "victim"), authn.Client)
		forged := other.RefreshToken[:len(other.RefreshToken)-43] + base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		if r := logout("us-east", forged); r.Status != http.StatusNoContent {
			t.Errorf("forged logout: %d", r.Status)
		}
		if r := refresh("us-east", other.RefreshToken); r.Status != 200 {
			t.Errorf("a forged logout ended the session: %d %s", r.Status, r.Body)
		}
		if r := logout("us-east", "nonsense"); r.Status != 400 {
			t.Errorf("malformed logout: %d", r.Status)
		}
	})
}

func TestAccessTokens(t *testing.T) {
	e := newEnv(t)
	b := e.register(t, "eu-west", uniqueEmail(t, "tokens"), authn.Client)
	me := func(auth string) *apitest.Response {
		return e.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/users/me", Auth: auth})
	}
	subject := accesstoken.Subject{UserID: b.User.ID, KSID: b.User.ID.KeyspaceID(), Role: "client", Region: "eu-west"}
	mint := func(cfg tokenissue.Config, now func() time.Time) string {
		tk, err := tokenissue.New(cfg, e.Tokens.Keys(), now)
		if err != nil {
			t.Fatal(err)
		}
		s, _, err := tk.Issue(subject)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := tokenissue.Config{Issuer: apitest.Issuer, Audience: apitest.Audience, TTL: 15 * time.Minute}
	wrongAud, wrongIss := good, good
	wrongAud.Audience, wrongIss.Issuer = "another-api", "https://evil.test"
	otherKey, _ := tokenissue.GenerateKey()
	otherSet, _ := tokenissue.NewSigningKeys(otherKey)
	otherTokens, _ := tokenissue.New(good, otherSet, nil)
	foreign, _, _ := otherTokens.Issue(subject)

	// alg "none": the same claims, unsigned.
	parts := strings.Split(b.AccessToken, ".")
	hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt", "kid": e.Tokens.Keys().SigningKeyID()})
	none := base64.RawURLEncoding.EncodeToString(hdr) + "." + parts[1] + "."

	if r := me("Bearer " + b.AccessToken); r.Status != 200 {
		t.Fatalf("good token: %d %s", r.Status, r.Body)
	}
	if r := me("Bearer " + mint(good, nil)); r.Status != 200 {
		t.Fatalf("freshly minted: %d %s", r.Status, r.Body)
	}
	for name, auth := range map[string]string{
		"no credentials":           "",
		"alg none":                 "Bearer " + none,
		"expired":                  "Bearer " + mint(good, func() time.Time { return time.Now().Add(-time.Hour) }),
		"wrong audience":           "Bearer " + mint(wrongAud, nil),
		"wrong issuer":             "Bearer " + mint(wrongIss, nil),
		"unknown signing key":      "Bearer " + foreign,
		"refresh token as access":  "Bearer " + b.RefreshToken,
		"refresh token as api key": "ApiKey " + b.RefreshToken,
		"tampered claims":          "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "." + parts[2],
		"basic auth":               "Basic dXNlcjpwYXNz",
	} {
		if r := me(auth); r.Status != 401 || r.ErrorCode() != "unauthenticated" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// The user's token in another region: the data is not there, the router is told where it is.
	r := e.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/users/me", Token: b.AccessToken})
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "eu-west" {
		t.Errorf("me in the wrong region: %d %s", r.Status, r.Body)
	}
	// The /api alias.
	if r := e.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/users/me", Token: b.AccessToken}); r.Status != 200 {
		t.Errorf("alias: %d", r.Status)
	}

	t.Run("internal routes are not for clients", func(t *testing.T) {
		for _, path := range []string{"/api/v1/internal/login", "/api/v1/internal/email-claims", "/api/v1/internal/oauth-login"} {
			if r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: path, Token: b.AccessToken, Body: map[string]string{}}); r.Status != 403 {
				t.Errorf("%s with a router's certificate: %d", path, r.Status)
			}
			r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: path, Body: `{"nope": 1}`, AsNode: "us-east"})
			if r.Status != 400 {
				t.Errorf("%s from a node with a bad body: %d %s", path, r.Status, r.Body)
			}
		}
		if r := e.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/internal/email-claims/xyz", AsNode: "us-east"}); r.Status != 400 {
			t.Errorf("lookup of a malformed hash: %d", r.Status)
		}
	})

	t.Run("jwks", func(t *testing.T) {
		r := e.Do(t, "ap-south", apitest.Request{Method: "GET", Path: "/api/v1/auth/jwks.json"})
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || r.Header.Get("Cache-Control") == "" {
			t.Fatalf("jwks: %d %v", r.Status, r.Header)
		}
		ks, err := accesstoken.ParseJWKS(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		// A router holding only the published keys verifies the node's tokens.
		v, err := accesstoken.NewVerifier(accesstoken.Config{Issuer: good.Issuer, Audience: good.Audience}, ks, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := v.Verify(b.AccessToken); err != nil || s.UserID != b.User.ID || s.Region != "eu-west" {
			t.Errorf("verify with the JWKS: %+v %v", s, err)
		}
		if _, err := v.Verify(foreign); err == nil {
			t.Error("a token of another key verified")
		}
	})
}
