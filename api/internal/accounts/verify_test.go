package accounts

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/wire"
)

func TestEmailVerification(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	createKey := func(region, token string) *apitest.Response {
		return e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/api-keys", Token: token,
			Body: map[string]any{"name": "ci", "scopes": []string{ScopeProfileRead}}})
	}
	me := func(region, token string) userJSON {
		r := e.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/users/me", Token: token})
		if r.Status != http.StatusOK {
			t.Fatalf("me: %d %s", r.Status, r.Body)
		}
		var u userJSON
		r.JSON(t, &u)
		return u
	}

	t.Run("register mails a link that verifies once", func(t *testing.T) {
		email := uniqueEmail(t, "verify")
		b := e.register(t, "eu-west", email, authn.Client)
		if b.User.EmailVerified || me("eu-west", b.AccessToken).EmailVerified {
			t.Fatal("a password registration starts verified")
		}
		msgs := e.inbox(t, email)
		if len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "Verify") ||
			!containsAll(msgs[0].Body, redirectBase+"/verify-email?token=mev_", "POST "+redirectBase+"/api/v1/auth/verify-email", "expires in 24 hours") {
			t.Fatalf("verification mail: %+v", msgs)
		}
		tok := e.verifyToken(t, email)

		// Unverified: may log in, may not create API keys.
		if r := e.login(t, "eu-west", email, testPassword, clientIP()); r.Status != http.StatusOK {
			t.Errorf("an unverified account cannot log in: %d", r.Status)
		}
		if r := createKey("eu-west", b.AccessToken); r.Status != http.StatusForbidden || errorCode(t, r) != "email_unverified" {
			t.Errorf("API key of an unverified account: %d %s", r.Status, r.Body)
		}

		// Tampered links change nothing.
		last := tok[len(tok)-1]
		swap := byte('A')
		if last == 'A' {
			swap = 'B'
		}
		other := e.register(t, "eu-west", uniqueEmail(t, "other"), authn.Client)
		for name, bad := range map[string]string{
			"secret changed":   tok[:len(tok)-1] + string(swap),
			"other user's ID":  "mev_" + other.User.ID.String() + tok[strings.IndexByte(tok, '.'):],
			"truncated":        tok[:len(tok)-3],
			"not a token":      "hello",
			"refresh token":    b.RefreshToken,
			"prefix of secret": strings.Replace(tok, "mev_", "mrt_", 1),
		} {
			r := e.verify(t, "eu-west", bad)
			if r.Status != http.StatusBadRequest {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		if me("eu-west", b.AccessToken).EmailVerified {
			t.Fatal("a tampered link verified the account")
		}

		// Another region's node sends the request home (the router replays it there).
		if r := e.verify(t, "us-east", tok); r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "eu-west" {
			t.Errorf("verify in another region: %d %v %s", r.Status, r.Header, r.Body)
		}
		if r := e.verify(t, "eu-west", tok); r.Status != http.StatusNoContent {
			t.Fatalf("verify: %d %s", r.Status, r.Body)
		}
		// Single use: a retry, from any node, is refused and changes nothing.
		for range 2 {
			if r := e.verify(t, "eu-west", tok); r.Status != http.StatusBadRequest || errorCode(t, r) != "invalid_verification_token" {
				t.Errorf("second use: %d %s", r.Status, r.Body)
			}
		}
		if !me("eu-west", b.AccessToken).EmailVerified {
			t.Error("the account is not verified")
		}
		// The old access token predates the verification: refresh for one that carries it.
		if r := createKey("eu-west", b.AccessToken); r.Status != http.StatusForbidden {
			t.Errorf("API key with the pre-verification token: %d", r.Status)
		}
		r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": b.RefreshToken}})
		var nb tokenBundle
		r.JSON(t, &nb)
		if r.Status != http.StatusOK || !nb.User.EmailVerified {
			t.Fatalf("refresh: %d %s", r.Status, r.Body)
		}
		if r := createKey("eu-west", nb.AccessToken); r.Status != http.StatusCreated {
			t.Errorf("API key once verified: %d %s", r.Status, r.Body)
		}
		got := e.actions(t, b.User.ID.KeyspaceID())
		if count(got, audit.ActionVerificationSent) != 1 || count(got, audit.ActionEmailVerified) != 1 {
			t.Errorf("audit: %v", got)
		}
		// Resending for a verified account is refused.
		if r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/auth/verify-email/resend", Token: nb.AccessToken}); r.Status != http.StatusConflict {
			t.Errorf("resend when verified: %d %s", r.Status, r.Body)
		}
	})

	t.Run("concurrent uses of one link and exactly one verifies", func(t *testing.T) {
		email := uniqueEmail(t, "race")
		e.register(t, "us-east", email, authn.Freelancer)
		tok := e.verifyToken(t, email)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			statuses = map[int]int{}
		)
		for range 8 {
			wg.Go(func() {
				r := e.verify(t, "us-east", tok)
				mu.Lock()
				statuses[r.Status]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if statuses[http.StatusNoContent] != 1 || statuses[http.StatusBadRequest] != 7 {
			t.Errorf("8 concurrent uses: %v", statuses)
		}
	})

	t.Run("expired, replaced and resent links", func(t *testing.T) {
		email := uniqueEmail(t, "expire")
		b := e.register(t, "ap-south", email, authn.Client)
		first := e.verifyToken(t, email)
		e.clock.Advance(DefaultVerifyTTL + 1)
		r := e.verify(t, "ap-south", first)
		e.clock.Advance(-DefaultVerifyTTL - 1)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("expired link: %d %s", r.Status, r.Body)
		}
		resend := func() *apitest.Response {
			return e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/verify-email/resend", Token: b.AccessToken})
		}
		if r := resend(); r.Status != http.StatusAccepted {
			t.Fatalf("resend: %d %s", r.Status, r.Body)
		}
		if n := len(e.inbox(t, email)); n != 2 {
			t.Fatalf("%d mails after a resend", n)
		}
		second := e.verifyToken(t, email)
		if r := resend(); r.Status != http.StatusAccepted {
			t.Fatalf("resend: %d %s", r.Status, r.Body)
		}
		third := e.verifyToken(t, email)
		// Only the newest link works; the unexpired older one was replaced.
		if r := e.verify(t, "ap-south", second); r.Status != http.StatusBadRequest {
			t.Errorf("a replaced link: %d %s", r.Status, r.Body)
		}
		// The budget: 3 resends an hour.
		if r := resend(); r.Status != http.StatusAccepted {
			t.Fatalf("third resend: %d %s", r.Status, r.Body)
		}
		r = resend()
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || r.Header.Get("RateLimit-Remaining") == "" {
			t.Errorf("fourth resend: %d %v %s", r.Status, r.Header, r.Body)
		}
		if n := len(e.inbox(t, email)); n != 4 {
			t.Errorf("%d mails after a refused resend, want 4", n)
		}
		if r := e.verify(t, "ap-south", third); r.Status != http.StatusBadRequest {
			t.Errorf("replaced by the third resend: %d", r.Status)
		}
		if r := e.verify(t, "ap-south", e.verifyToken(t, email)); r.Status != http.StatusNoContent {
			t.Errorf("newest link: %d %s", r.Status, r.Body)
		}
		if r := e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/verify-email/resend"}); r.Status != http.StatusUnauthorized {
			t.Errorf("anonymous resend: %d", r.Status)
		}
	})

	t.Run("a link verifies only the address it was sent to", func(t *testing.T) {
		email := uniqueEmail(t, "moved")
		b := e.register(t, "us-east", email, authn.Client)
		tok := e.verifyToken(t, email)
		k := b.User.ID.KeyspaceID()
		// The account's address changes after the mail went out (as an email change would).
		if _, err := e.pool(t, k).Exec(ctx, `UPDATE auth.users SET email = 'x'||email, email_normalized = 'x'||email_normalized WHERE ksid = $1 AND id = $2`,
			k.Bytes(), b.User.ID.Bytes()); err != nil {
			t.Fatal(err)
		}
		if r := e.verify(t, "us-east", tok); r.Status != http.StatusBadRequest {
			t.Errorf("link for the old address: %d %s", r.Status, r.Body)
		}
		if me("us-east", b.AccessToken).EmailVerified {
			t.Error("the new address was verified by the old address's link")
		}
	})
}
