package accounts

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestAPIKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	owner := e.registerVerified(t, "us-east", uniqueEmail(t, "owner"), authn.Client)
	tok := owner.AccessToken
	create := func(region, auth string, body any) *apitest.Response {
		return e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/api-keys", Auth: auth, Body: body})
	}
	me := func(region, auth string) *apitest.Response {
		return e.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/users/me", Auth: auth})
	}

	r := create("us-east", "Bearer "+tok, map[string]any{"name": " CI deploy ", "scopes": []string{ScopeProfileRead, ScopeJobsWrite}})
	var k apiKeyCreated
	r.JSON(t, &k)
	if r.Status != http.StatusCreated || k.Name != "CI deploy" || !strings.HasPrefix(k.Key, "mk_key_") || k.ID.Kind() != shardkey.KindAPIKey ||
		len(k.Scopes) != 2 || k.CreatedAt.IsZero() || !strings.HasPrefix(k.Key[len(k.Key)-43:], k.Prefix) {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if k.ID.KeyspaceID() != owner.User.ID.KeyspaceID() {
		t.Errorf("the key is not homed with its owner")
	}

	t.Run("use", func(t *testing.T) {
		r := me("us-east", "ApiKey "+k.Key)
		var u userJSON
		r.JSON(t, &u)
		if r.Status != 200 || u.ID != owner.User.ID {
			t.Fatalf("me with the key: %d %s", r.Status, r.Body)
		}
		var lastUsed bool
		if err := e.pool(t, k.ID.KeyspaceID()).QueryRow(ctx, `SELECT last_used_at IS NOT NULL FROM auth.api_keys WHERE ksid = $1 AND id = $2`,
			k.ID.KeyspaceID().Bytes(), k.ID.Bytes()).Scan(&lastUsed); err != nil || !lastUsed {
			t.Errorf("last_used_at: %v %v", lastUsed, err)
		}
		// Elsewhere, the node sends the router to the key's home.
		if r := me("eu-west", "ApiKey "+k.Key); r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "us-east" {
			t.Errorf("key in the wrong region: %d %s", r.Status, r.Body)
		}
		// Scopes: a key without profile:read cannot read the account.
		r = create("us-east", "Bearer "+tok, map[string]any{"name": "jobs only", "scopes": []string{ScopeJobsRead}})
		var jobsOnly apiKeyCreated
		r.JSON(t, &jobsOnly)
		if r := me("us-east", "ApiKey "+jobsOnly.Key); r.Status != http.StatusForbidden {
			t.Errorf("key without the scope: %d %s", r.Status, r.Body)
		}
		p, err := e.svc["us-east"].VerifyAPIKey(ctx, jobsOnly.Key)
		if err != nil || p.Method != authn.MethodAPIKey || p.KeyID != jobsOnly.ID || p.UserID != owner.User.ID || p.Role != authn.Client ||
			!p.HasScope(ScopeJobsRead) || p.HasScope(ScopeJobsWrite) || p.Region != "us-east" {
			t.Errorf("principal: %+v %v", p, err)
		}
	})

	t.Run("bad keys", func(t *testing.T) {
		secretless := k.Key[:len(k.Key)-43]
		for name, key := range map[string]string{
			"wrong secret":   secretless + strings.Repeat("A", 43),
			"truncated":      k.Key[:len(k.Key)-1],
			"garbage":        "mk_nope",
			"refresh token":  owner.RefreshToken,
			"access token":   tok,
			"unknown key id": "mk_" + mustID(t, e, shardkey.KindAPIKey, owner.User.ID.KeyspaceID()).String() + k.Key[len(k.Key)-44:],
			"no such region": "mk_" + mustID(t, e, shardkey.KindAPIKey, shardkey.NewKeyspaceID(0x99, []byte("x"))).String() + k.Key[len(k.Key)-44:],
		} {
			if r := me("us-east", "ApiKey "+key); r.Status != 401 || r.ErrorCode() != "unauthenticated" {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
	})

	t.Run("management needs an access token", func(t *testing.T) {
		auth := "ApiKey " + k.Key
		for name, r := range map[string]*apitest.Response{
			"create": create("us-east", auth, map[string]any{"name": "escalate", "scopes": []string{ScopeProfileWrite}}),
			"list":   e.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/auth/api-keys", Auth: auth}),
			"delete": e.Do(t, "us-east", apitest.Request{Method: "DELETE", Path: "/api/v1/auth/api-keys/" + k.ID.String(), Auth: auth}),
		} {
			if r.Status != http.StatusForbidden {
				t.Errorf("%s with an API key: %d %s", name, r.Status, r.Body)
			}
		}
		if r := create("us-east", "", map[string]any{"name": "anon", "scopes": []string{ScopeJobsRead}}); r.Status != 401 {
			t.Errorf("create without credentials: %d", r.Status)
		}
	})

	t.Run("validation", func(t *testing.T) {
		for name, tc := range map[string]struct {
			body  any
			field string
		}{
			"no name":        {map[string]any{"scopes": []string{ScopeJobsRead}}, "name"},
			"long name":      {map[string]any{"name": strings.Repeat("n", 101), "scopes": []string{ScopeJobsRead}}, "name"},
			"no scopes":      {map[string]any{"name": "x", "scopes": []string{}}, "scopes"},
			"unknown scope":  {map[string]any{"name": "x", "scopes": []string{"admin:all"}}, "scopes.0"},
			"repeated scope": {map[string]any{"name": "x", "scopes": []string{ScopeJobsRead, ScopeJobsRead}}, "scopes.1"},
			"scopes type":    {map[string]any{"name": "x", "scopes": "jobs:read"}, "scopes"},
			"unknown field":  {map[string]any{"name": "x", "scopes": []string{ScopeJobsRead}, "expires": 1}, "expires"},
		} {
			r := create("us-east", "Bearer "+tok, tc.body)
			var body struct {
				Error struct {
					Fields map[string]string `json:"fields"`
				} `json:"error"`
			}
			r.JSON(t, &body)
			if r.Status != 400 || body.Error.Fields[tc.field] == "" {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
	})

	t.Run("list pages and hides keys", func(t *testing.T) {
		u := e.registerVerified(t, "eu-west", uniqueEmail(t, "lister"), authn.Freelancer)
		made := map[shardkey.ID]bool{}
		for i := range 5 {
			r := create("eu-west", "Bearer "+u.AccessToken, map[string]any{"name": "key " + string(rune('a'+i)), "scopes": Scopes()})
			var c apiKeyCreated
			r.JSON(t, &c)
			made[c.ID] = true
		}
		seen := map[shardkey.ID]bool{}
		cursor, pages := "", 0
		for {
			path := "/api/v1/auth/api-keys?limit=2"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			r := e.Do(t, "eu-west", apitest.Request{Method: "GET", Path: path, Token: u.AccessToken})
			if r.Status != 200 || strings.Contains(string(r.Body), "mk_") || strings.Contains(string(r.Body), `"key"`) {
				t.Fatalf("list: %d %s", r.Status, r.Body)
			}
			var page rest.Page[apiKeyJSON]
			r.JSON(t, &page)
			pages++
			for _, it := range page.Items {
				if seen[it.ID] || !made[it.ID] {
					t.Errorf("listed %s (seen before: %v)", it.ID, seen[it.ID])
				}
				seen[it.ID] = true
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		if len(seen) != 5 || pages != 3 {
			t.Errorf("saw %d keys in %d pages", len(seen), pages)
		}
		for name, q := range map[string]string{"limit": "?limit=0", "cursor": "?cursor=abc", "big limit": "?limit=101"} {
			if r := e.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/auth/api-keys" + q, Token: u.AccessToken}); r.Status != 400 {
				t.Errorf("%s: %d", name, r.Status)
			}
		}
	})

	t.Run("revoke", func(t *testing.T) {
		r := create("us-east", "Bearer "+tok, map[string]any{"name": "short-lived", "scopes": []string{ScopeProfileRead}})
		var c apiKeyCreated
		r.JSON(t, &c)
		if r := me("us-east", "ApiKey "+c.Key); r.Status != 200 {
			t.Fatalf("before revoke: %d", r.Status)
		}
		// Other users cannot revoke it, whatever region they are in: to them it does not exist.
		for _, region := range apitest.Regions {
			other := e.registerVerified(t, region, uniqueEmail(t, "intruder"), authn.Client)
			if r := e.Do(t, region, apitest.Request{Method: "DELETE", Path: "/api/v1/auth/api-keys/" + c.ID.String(), Token: other.AccessToken}); r.Status != 404 {
				t.Errorf("intruder from %s: %d %s", region, r.Status, r.Body)
			}
		}
		del := func() *apitest.Response {
			return e.Do(t, "us-east", apitest.Request{Method: "DELETE", Path: "/api/v1/auth/api-keys/" + c.ID.String(), Token: tok})
		}
		if r := del(); r.Status != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", r.Status, r.Body)
		}
		if r := me("us-east", "ApiKey "+c.Key); r.Status != 401 {
			t.Errorf("revoked key: %d %s", r.Status, r.Body)
		}
		if r := del(); r.Status != http.StatusNoContent {
			t.Errorf("revoke twice: %d", r.Status)
		}
		r = e.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/auth/api-keys?limit=100", Token: tok})
		if strings.Contains(string(r.Body), c.ID.String()) {
			t.Errorf("a revoked key is listed")
		}
		for name, id := range map[string]string{
			"unknown": mustID(t, e, shardkey.KindAPIKey, owner.User.ID.KeyspaceID()).String(),
			"user id": "", // replaced below
		} {
			if name == "user id" {
				if r := e.Do(t, "us-east", apitest.Request{Method: "DELETE", Path: "/api/v1/auth/api-keys/" + owner.User.ID.String(), Token: tok}); r.Status != 400 {
					t.Errorf("a user ID: %d", r.Status)
				}
				continue
			}
			if r := e.Do(t, "us-east", apitest.Request{Method: "DELETE", Path: "/api/v1/auth/api-keys/" + id, Token: tok}); r.Status != 404 {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		got := e.actions(t, owner.User.ID.KeyspaceID())
		if count(got, audit.ActionAPIKeyCreated) != 3 || count(got, audit.ActionAPIKeyRevoked) != 1 {
			t.Errorf("audit: %v", got)
		}
		entries, _ := audit.List(ctx, e.pool(t, owner.User.ID.KeyspaceID()), owner.User.ID.KeyspaceID(), 100)
		for _, en := range entries {
			if strings.Contains(en.Target, "mk_") || strings.Contains(stringify(en.Details), "mk_") {
				t.Errorf("a key in the audit log: %+v", en)
			}
		}
	})

	// Last two: they move the clock.
	t.Run("creation needs a recent login or the password", func(t *testing.T) {
		email := uniqueEmail(t, "reauth")
		u := e.registerVerified(t, "eu-west", email, authn.Freelancer)
		body := func(pw string) map[string]any {
			m := map[string]any{"name": "k", "scopes": []string{ScopeProfileRead}}
			if pw != "" {
				m["password"] = pw
			}
			return m
		}
		// Fresh from registration: fine, and the key records the session that made it.
		r := create("eu-west", "Bearer "+u.AccessToken, body(""))
		var k apiKeyCreated
		r.JSON(t, &k)
		if r.Status != http.StatusCreated {
			t.Fatalf("fresh session: %d %s", r.Status, r.Body)
		}
		pool, ks := e.pool(t, u.User.ID.KeyspaceID()), u.User.ID.KeyspaceID()
		var fromKey, fromToken []byte
		if err := pool.QueryRow(ctx, `SELECT created_by_family FROM auth.api_keys WHERE ksid = $1 AND id = $2`, ks.Bytes(), k.ID.Bytes()).Scan(&fromKey); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT family_id FROM auth.refresh_tokens WHERE ksid = $1 AND token_hash = $2`, ks.Bytes(), secretHash(u.RefreshToken)).Scan(&fromToken); err != nil {
			t.Fatal(err)
		}
		if len(fromKey) == 0 || string(fromKey) != string(fromToken) {
			t.Errorf("created_by_family %x, the session's family %x", fromKey, fromToken)
		}
		// Eleven minutes on the same session, even with a token fresh from a refresh, is not recent.
		e.clock.Advance(11 * time.Minute)
		ref := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]any{"refresh_token": u.RefreshToken}})
		var nb tokenBundle
		ref.JSON(t, &nb)
		if ref.Status != 200 {
			t.Fatalf("refresh: %d %s", ref.Status, ref.Body)
		}
		for name, pw := range map[string]string{"no password": "", "a wrong password": "not the password!"} {
			if r := create("eu-west", "Bearer "+nb.AccessToken, body(pw)); r.Status != http.StatusUnauthorized || r.ErrorCode() != "reauthentication_required" {
				t.Errorf("old login, %s: %d %s", name, r.Status, r.Body)
			}
		}
		if r := create("eu-west", "Bearer "+nb.AccessToken, body(testPassword)); r.Status != http.StatusCreated {
			t.Errorf("old login with the password: %d %s", r.Status, r.Body)
		}
		// A new login is recent again.
		var lb tokenBundle
		lr := e.login(t, "eu-west", email, testPassword, clientIP())
		if lr.JSON(t, &lb); lr.Status != 200 {
			t.Fatalf("login: %d %s", lr.Status, lr.Body)
		}
		if r := create("eu-west", "Bearer "+lb.AccessToken, body("")); r.Status != http.StatusCreated {
			t.Errorf("after a new login: %d %s", r.Status, r.Body)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		tok := e.registerVerified(t, "us-east", uniqueEmail(t, "expiry"), authn.Client).AccessToken
		now := e.clock.Now()
		for name, exp := range map[string]time.Time{"in the past": now.Add(-time.Minute), "now": now, "over a year": now.Add(367 * 24 * time.Hour)} {
			if r := create("us-east", "Bearer "+tok, map[string]any{"name": "x", "scopes": []string{ScopeProfileRead}, "expires_at": exp}); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "expires_at") {
				t.Errorf("expires_at %s: %d %s", name, r.Status, r.Body)
			}
		}
		exp := now.Add(time.Hour).UTC().Truncate(time.Second)
		r := create("us-east", "Bearer "+tok, map[string]any{"name": "one hour", "scopes": []string{ScopeProfileRead}, "expires_at": exp})
		var k apiKeyCreated
		r.JSON(t, &k)
		if r.Status != http.StatusCreated || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
			t.Fatalf("create with expiry: %d %s", r.Status, r.Body)
		}
		list := e.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/auth/api-keys?limit=100", Auth: "Bearer " + tok})
		var page rest.Page[apiKeyJSON]
		list.JSON(t, &page)
		listed := false
		for _, it := range page.Items {
			listed = listed || (it.ID == k.ID && it.ExpiresAt != nil && it.ExpiresAt.Equal(exp))
		}
		if !listed {
			t.Errorf("the listing does not show the expiry: %s", list.Body)
		}
		if r := me("us-east", "ApiKey "+k.Key); r.Status != 200 {
			t.Fatalf("before expiry: %d %s", r.Status, r.Body)
		}
		e.clock.Advance(time.Hour)
		if r := me("us-east", "ApiKey "+k.Key); r.Status != http.StatusUnauthorized {
			t.Errorf("at expiry: %d %s", r.Status, r.Body)
		}
	})
}

func mustID(t *testing.T, e *env, kind shardkey.Kind, k shardkey.KeyspaceID) shardkey.ID {
	t.Helper()
	id, err := e.IDs.New(kind, k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func stringify(m map[string]any) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(k)
		b.WriteString("=")
		if s, ok := v.(string); ok {
			b.WriteString(s)
		}
		b.WriteString(";")
	}
	return b.String()
}
