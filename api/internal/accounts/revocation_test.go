package accounts

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/revocation"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// familyOf is the session a bundle belongs to.
func familyOf(t *testing.T, b tokenBundle) shardkey.ID {
	t.Helper()
	fam, err := parseRefreshToken(b.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	return fam
}

func (e *env) me(t *testing.T, region, token string) *apitest.Response {
	t.Helper()
	return e.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/users/me", Token: token})
}

func mustEnd(t *testing.T, r *apitest.Response, what string) {
	t.Helper()
	if r.Status != http.StatusUnauthorized || r.Header.Get(wire.TokenRevoked) == "" {
		t.Fatalf("%s: %d %s (header %q), want 401 with %s", what, r.Status, r.Body, r.Header.Get(wire.TokenRevoked), wire.TokenRevoked)
	}
}

// Ending a session ends its access tokens, not only its refresh tokens: on the node that ended it at
// once, on the region's other nodes through Redis or (Redis down) the shards, and in other regions
// through their nodes.
func TestEndedSessionsEndTheirAccessTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	email := uniqueEmail(t, "revoke")
	first := e.register(t, "eu-west", email, authn.Client)
	var second tokenBundle
	if r := e.login(t, "eu-west", email, testPassword, clientIP()); r.Status != http.StatusOK {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	} else {
		r.JSON(t, &second)
	}
	// The access token names its session.
	ver, err := accesstoken.NewVerifier(accesstoken.Config{Issuer: apitest.Issuer, Audience: apitest.Audience}, e.Tokens.Keys().Public(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := ver.Verify(first.AccessToken)
	if err != nil || sub.Session != familyOf(t, first) {
		t.Fatalf("access token's sid %s (%v), want the session %s", sub.Session, err, familyOf(t, first))
	}
	for _, b := range []tokenBundle{first, second} {
		if r := e.me(t, "eu-west", b.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("before logout: %d %s", r.Status, r.Body)
		}
	}

	if r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/auth/logout", Body: map[string]string{"refresh_token": first.RefreshToken}}); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	mustEnd(t, e.me(t, "eu-west", first.AccessToken), "the logged-out session on the node that ended it")
	if r := e.me(t, "eu-west", second.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("the other session after logout: %d %s", r.Status, r.Body)
	}

	fam := familyOf(t, first)
	t.Run("another node of the region, through Redis", func(t *testing.T) {
		peer := *e.Nodes["eu-west"].App
		other, err := revocation.New(&peer, revocation.DefaultConfig(time.Hour), FamilyLog{})
		if err != nil {
			t.Fatal(err)
		}
		if other.Revoked(fam) {
			t.Fatal("a new node knew before reading anything")
		}
		if err := other.PollRedis(ctx); err != nil {
			t.Fatal(err)
		}
		if !other.Revoked(fam) {
			t.Error("the region's Redis did not carry the revocation")
		}
		if other.Revoked(familyOf(t, second)) {
			t.Error("a live session was read as revoked")
		}
	})
	t.Run("another node of the region, Redis down", func(t *testing.T) {
		deps := *e.Nodes["eu-west"].App
		dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
		t.Cleanup(func() { dead.Close() })
		deps.Redis = dead
		other, err := revocation.New(&deps, revocation.DefaultConfig(time.Hour), FamilyLog{})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.PollRedis(ctx); err == nil {
			t.Fatal("polling a dead Redis succeeded")
		}
		other.Reconcile(ctx)
		if !other.Revoked(fam) {
			t.Error("the shards did not carry the revocation")
		}
		if other.Revoked(familyOf(t, second)) {
			t.Error("a live session was read as revoked")
		}
	})
	t.Run("other regions, through the region's nodes", func(t *testing.T) {
		us := e.rvk["us-east"]
		// A token is also presented to other regions' nodes (a request routed by a path ID).
		if r := e.me(t, "us-east", first.AccessToken); r.Status == http.StatusUnauthorized {
			t.Fatalf("us-east refused before hearing of it: %d %s", r.Status, r.Body)
		}
		us.PollPeers(ctx)
		if !us.Revoked(fam) {
			t.Fatal("us-east did not learn eu-west's revocation")
		}
		mustEnd(t, e.me(t, "us-east", first.AccessToken), "the logged-out session in another region")
		// Learnt from elsewhere, it is not offered on as us-east's own.
		e.rvk["ap-south"].PollPeers(ctx)
		var out struct {
			Families []struct{ ID string } `json:"families"`
		}
		r := e.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1" + revocation.InternalPath + "?since=0", AsNode: "ap-south"})
		r.JSON(t, &out)
		for _, f := range out.Families {
			if f.ID == fam.String() {
				t.Error("us-east lists eu-west's revocation as its own")
			}
		}
		if r := e.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1" + revocation.InternalPath + "?since=x", AsNode: "ap-south"}); r.Status != http.StatusBadRequest {
			t.Errorf("bad since: %d %s", r.Status, r.Body)
		}
	})

	t.Run("log out everywhere", func(t *testing.T) {
		var third tokenBundle
		if r := e.login(t, "us-east", email, testPassword, clientIP()); r.Status != http.StatusOK {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		} else {
			r.JSON(t, &third)
		}
		if r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/auth/logout-all", Token: second.AccessToken}); r.Status != http.StatusNoContent {
			t.Fatalf("logout-all: %d %s", r.Status, r.Body)
		}
		mustEnd(t, e.me(t, "eu-west", second.AccessToken), "the caller's own session")
		mustEnd(t, e.me(t, "eu-west", third.AccessToken), "another session")
		for _, b := range []tokenBundle{second, third} {
			if r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": b.RefreshToken}}); r.Status != http.StatusUnauthorized {
				t.Errorf("refresh after logout-all: %d %s", r.Status, r.Body)
			}
		}
		k := first.User.ID.KeyspaceID()
		if got := e.actions(t, k); count(got, audit.ActionLogoutAll) != 1 {
			t.Errorf("audit: %v", got)
		}
		// A new login is a new session.
		var fourth tokenBundle
		if r := e.login(t, "eu-west", email, testPassword, clientIP()); r.Status != http.StatusOK {
			t.Fatalf("login after logout-all: %d %s", r.Status, r.Body)
		} else {
			r.JSON(t, &fourth)
		}
		if r := e.me(t, "eu-west", fourth.AccessToken); r.Status != http.StatusOK {
			t.Errorf("new session after logout-all: %d %s", r.Status, r.Body)
		}
	})

	t.Run("refresh-token reuse", func(t *testing.T) {
		b := e.registerVerified(t, "ap-south", uniqueEmail(t, "reuse"), authn.Freelancer)
		var next tokenBundle
		r := e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": b.RefreshToken}})
		r.JSON(t, &next)
		if r.Status != http.StatusOK {
			t.Fatalf("refresh: %d %s", r.Status, r.Body)
		}
		if r := e.me(t, "ap-south", next.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("rotated token: %d %s", r.Status, r.Body)
		}
		newKey := func(token string) string {
			t.Helper()
			r := e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/api-keys", Token: token,
				Body: map[string]any{"name": "k", "scopes": []string{"profile:read"}}})
			var out struct{ Key string }
			r.JSON(t, &out)
			if r.Status != http.StatusCreated || out.Key == "" {
				t.Fatalf("create key: %d %s", r.Status, r.Body)
			}
			return out.Key
		}
		stolenKey := newKey(next.AccessToken)
		var elsewhere tokenBundle
		if r := e.login(t, "ap-south", b.User.Email, testPassword, clientIP()); r.Status != http.StatusOK {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		} else {
			r.JSON(t, &elsewhere)
		}
		keptKey := newKey(elsewhere.AccessToken)
		byKey := func(key string) int {
			return e.Do(t, "ap-south", apitest.Request{Method: "GET", Path: "/api/v1/users/me", Auth: "ApiKey " + key}).Status
		}
		if byKey(stolenKey) != http.StatusOK || byKey(keptKey) != http.StatusOK {
			t.Fatal("keys before the reuse do not work")
		}
		// A thief presents the spent token: the family ends, and with it the rightful holder's
		// access tokens (the thief's too).
		if r := e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": b.RefreshToken}}); r.Status != http.StatusUnauthorized {
			t.Fatalf("reuse: %d %s", r.Status, r.Body)
		}
		mustEnd(t, e.me(t, "ap-south", next.AccessToken), "an access token of a reused family")
		mustEnd(t, e.me(t, "ap-south", b.AccessToken), "the first access token of a reused family")
		if got := byKey(stolenKey); got != http.StatusUnauthorized {
			t.Errorf("an API key created in the reused session: %d, want 401", got)
		}
		if got := byKey(keptKey); got != http.StatusOK {
			t.Errorf("an API key of another session: %d, want 200", got)
		}
		if r := e.me(t, "ap-south", elsewhere.AccessToken); r.Status != http.StatusOK {
			t.Errorf("another session after the reuse: %d %s", r.Status, r.Body)
		}
	})
}

// A session ends at its absolute lifetime however often it refreshes.
func TestSessionMaxAge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RefreshTTL, c.SessionMaxAge = time.Hour, 2*time.Hour })
	b := e.register(t, "us-east", uniqueEmail(t, "maxage"), authn.Client)
	moved := time.Duration(0)
	defer func() { e.clock.Advance(-moved) }()
	tok := b.RefreshToken
	refreshed := 0
	for range 4 {
		e.clock.Advance(50 * time.Minute)
		moved += 50 * time.Minute
		r := e.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": tok}})
		if r.Status != http.StatusOK {
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("refresh at %s: %d %s", moved, r.Status, r.Body)
			}
			break
		}
		var nb tokenBundle
		r.JSON(t, &nb)
		tok = nb.RefreshToken
		refreshed++
	}
	// At 50 and 100 minutes the session rotates; its refresh token then expires at the session's end
	// (120 minutes), before the 150-minute attempt.
	if refreshed != 2 {
		t.Errorf("refreshed %d times in a 2-hour session with 50-minute steps, want 2", refreshed)
	}
}
