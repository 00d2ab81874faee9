package accounts

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/alexedwards/argon2id"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
)

func TestLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	users := map[string]tokenBundle{}
	emails := map[string]string{}
	for _, region := range apitest.Regions {
		emails[region] = uniqueEmail(t, region)
		users[region] = e.register(t, region, emails[region], authn.Freelancer)
	}

	t.Run("from every region for users of every region", func(t *testing.T) {
		for _, home := range apitest.Regions {
			for _, entry := range apitest.Regions {
				r := e.login(t, entry, emails[home], testPassword, clientIP())
				var b tokenBundle
				r.JSON(t, &b)
				if r.Status != 200 || b.User.ID != users[home].User.ID || b.User.Region != home || b.AccessToken == "" || b.RefreshToken == "" {
					t.Fatalf("user of %s via %s: %d %s", home, entry, r.Status, r.Body)
				}
				if got := r.Header.Get("X-Meridian-Region"); got != entry {
					t.Errorf("answered by %s, not the entry region %s", got, entry)
				}
				// The tokens are the home region's: they work there.
				if me := e.Do(t, home, apitest.Request{Method: "GET", Path: "/api/v1/users/me", Token: b.AccessToken}); me.Status != 200 {
					t.Errorf("me after login of %s via %s: %d %s", home, entry, me.Status, me.Body)
				}
			}
			if got := count(e.actions(t, users[home].User.ID.KeyspaceID()), audit.ActionLogin); got != len(apitest.Regions) {
				t.Errorf("%s: %d login events, want %d", home, got, len(apitest.Regions))
			}
			// Forwarded or not, the event names the client (not the forged first hop, not a node).
			entries, err := audit.List(ctx, e.pool(t, users[home].User.ID.KeyspaceID()), users[home].User.ID.KeyspaceID(), 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range entries {
				if en.Action == audit.ActionLogin && (!strings.HasPrefix(en.IP.String(), "10.") || en.ActorID != users[home].User.ID) {
					t.Errorf("%s: login event from %s by %s", home, en.IP, en.ActorID)
				}
			}
		}
	})

	t.Run("wrong password and unknown email look alike", func(t *testing.T) {
		for _, entry := range apitest.Regions {
			for name, r := range map[string]*apitest.Response{
				"wrong password (home)":    e.login(t, entry, emails[entry], "wrong password!", clientIP()),
				"wrong password (foreign)": e.login(t, entry, emails[other(entry)], "wrong password!", clientIP()),
				"unknown email":            e.login(t, entry, uniqueEmail(t, "nobody"), testPassword, clientIP()),
				"malformed email":          e.login(t, entry, "nobody", testPassword, clientIP()),
			} {
				var body struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				r.JSON(t, &body)
				if r.Status != 401 || body.Error.Code != "invalid_credentials" || body.Error.Message != "the email or password is wrong" {
					t.Errorf("%s via %s: %d %s", name, entry, r.Status, r.Body)
				}
			}
		}
		for _, home := range apitest.Regions {
			// One failure each from its own and from the region that forwarded to it.
			if got := count(e.actions(t, users[home].User.ID.KeyspaceID()), audit.ActionLoginFailed); got != 2 {
				t.Errorf("%s: %d login_failed events, want 2", home, got)
			}
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for name, body := range map[string]any{
			"no password":   map[string]string{"email": emails["us-east"]},
			"no email":      map[string]string{"password": testPassword},
			"unknown field": map[string]string{"email": emails["us-east"], "password": testPassword, "otp": "1"},
			"malformed":     `{"email":`,
		} {
			if r := e.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/login", Body: body}); r.Status != 400 {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
	})

	t.Run("failures per email are limited across regions", func(t *testing.T) {
		email := uniqueEmail(t, "limited")
		e.register(t, "ap-south", email, authn.Client)
		// Ten failures spread over every region (and over many addresses) use up the one budget the
		// home region keeps for the account.
		for i := range 10 {
			r := e.login(t, apitest.Regions[i%3], email, "wrong password!", clientIP())
			if r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		for _, entry := range apitest.Regions {
			r := e.login(t, entry, email, testPassword, clientIP()) // even the right password
			retry, _ := strconv.Atoi(r.Header.Get("Retry-After"))
			if r.Status != http.StatusTooManyRequests || r.ErrorCode() != "rate_limited" || retry < 1 {
				t.Errorf("via %s after 10 failures: %d %s %v", entry, r.Status, r.Body, r.Header)
			}
		}
		// Another account is not affected.
		if r := e.login(t, "ap-south", emails["ap-south"], testPassword, clientIP()); r.Status != 200 {
			t.Errorf("another account: %d %s", r.Status, r.Body)
		}
	})

	t.Run("a forwarded refusal carries the headers of a local one", func(t *testing.T) {
		email := uniqueEmail(t, "oracle")
		e.register(t, "eu-west", email, authn.Client)
		for i := range 10 {
			if r := e.login(t, "eu-west", email, "wrong password!", clientIP()); r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		// The home region refuses locally; the others forward and pass its refusal on. A client must not
		// tell them apart (that would say in which region the account lives).
		names := []string{"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"}
		local := e.login(t, "eu-west", email, "wrong password!", clientIP())
		if local.Status != http.StatusTooManyRequests {
			t.Fatalf("local refusal: %d %s", local.Status, local.Body)
		}
		for _, via := range []string{"us-east", "ap-south"} {
			r := e.login(t, via, email, "wrong password!", clientIP())
			if r.Status != http.StatusTooManyRequests || r.ErrorCode() != "rate_limited" {
				t.Fatalf("via %s: %d %s", via, r.Status, r.Body)
			}
			for _, k := range names {
				if local.Header.Get(k) == "" {
					t.Errorf("the local refusal lacks %s: %v", k, local.Header)
				}
				if r.Header.Get(k) == "" {
					t.Errorf("via %s: the forwarded refusal lacks %s (local: %q)", via, k, local.Header.Get(k))
				}
			}
			for _, k := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Policy"} {
				if r.Header.Get(k) != local.Header.Get(k) {
					t.Errorf("via %s: %s %q, local %q", via, k, r.Header.Get(k), local.Header.Get(k))
				}
			}
		}
	})

	t.Run("a success gives the email's budget back", func(t *testing.T) {
		email := uniqueEmail(t, "reset")
		e.register(t, "eu-west", email, authn.Client)
		for round := range 2 {
			for i := range 9 {
				if r := e.login(t, "us-east", email, "wrong password!", clientIP()); r.Status != 401 {
					t.Fatalf("round %d failure %d: %d %s", round, i+1, r.Status, r.Body)
				}
			}
			if r := e.login(t, "us-east", email, testPassword, clientIP()); r.Status != 200 {
				t.Fatalf("round %d success: %d %s", round, r.Status, r.Body)
			}
		}
	})

	t.Run("attempts per client address are limited", func(t *testing.T) {
		ip := clientIP()
		for i := range 10 {
			if r := e.login(t, "eu-west", uniqueEmail(t, "spray"), testPassword, ip); r.Status != 401 {
				t.Fatalf("attempt %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		r := e.login(t, "eu-west", emails["eu-west"], testPassword, ip)
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || r.Header.Get("RateLimit-Limit") != "10" {
			t.Errorf("11th attempt from one address: %d %s %v", r.Status, r.Body, r.Header)
		}
		if r := e.login(t, "eu-west", emails["eu-west"], testPassword, clientIP()); r.Status != 200 {
			t.Errorf("another address: %d %s", r.Status, r.Body)
		}
	})

	t.Run("deleted users cannot log in", func(t *testing.T) {
		email := uniqueEmail(t, "deleted")
		b := e.register(t, "us-east", email, authn.Client)
		if _, err := e.pool(t, b.User.ID.KeyspaceID()).Exec(ctx, `UPDATE auth.users SET deleted_at = now() WHERE ksid = $1 AND id = $2`,
			b.User.ID.KeyspaceID().Bytes(), b.User.ID.Bytes()); err != nil {
			t.Fatal(err)
		}
		if r := e.login(t, "eu-west", email, testPassword, clientIP()); r.Status != 401 {
			t.Errorf("deleted user: %d %s", r.Status, r.Body)
		}
		// The email stays reserved.
		r := e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
			Body: map[string]any{"email": email, "password": testPassword, "name": "Again", "role": "client"}})
		if r.Status != http.StatusConflict {
			t.Errorf("re-registering a deleted user's email: %d %s", r.Status, r.Body)
		}
	})

	t.Run("stale hashes are upgraded on login", func(t *testing.T) {
		email := uniqueEmail(t, "rehash")
		b := e.register(t, "eu-west", email, authn.Client)
		pool, k := e.pool(t, b.User.ID.KeyspaceID()), b.User.ID.KeyspaceID()
		weaker := testParams
		weaker.Memory = 9 * 1024
		old, err := argon2id.CreateHash(testPassword, &weaker)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `UPDATE auth.credentials SET password_hash = $3 WHERE ksid = $1 AND user_id = $2`, k.Bytes(), b.User.ID.Bytes(), old); err != nil {
			t.Fatal(err)
		}
		if r := e.login(t, "ap-south", email, testPassword, clientIP()); r.Status != 200 {
			t.Fatalf("login with an old hash: %d %s", r.Status, r.Body)
		}
		var phc string
		if err := pool.QueryRow(ctx, `SELECT password_hash FROM auth.credentials WHERE ksid = $1 AND user_id = $2`, k.Bytes(), b.User.ID.Bytes()).Scan(&phc); err != nil {
			t.Fatal(err)
		}
		if phc == old || phc[:30] != "$argon2id$v=19$m=8192,t=1,p=1$" {
			t.Errorf("hash not upgraded: %s", phc)
		}
	})

	// Last, because it takes a region down for the rest of this harness.
	t.Run("a region that is down", func(t *testing.T) {
		dirDown := e.emailWithDirectory(t, "ap-south")
		homeDown := e.emailWithDirectory(t, "us-east")
		e.register(t, "ap-south", homeDown, authn.Client)
		unaffected := e.emailWithDirectory(t, "eu-west")
		e.register(t, "us-east", unaffected, authn.Client)

		e.Nodes["ap-south"].Server.Close()
		for name, r := range map[string]*apitest.Response{
			"register, directory down": e.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
				Body: map[string]any{"email": dirDown, "password": testPassword, "name": "Dora", "role": "client"}}),
			"login, directory down": e.login(t, "eu-west", dirDown, testPassword, clientIP()),
			"login, home down":      e.login(t, "eu-west", homeDown, testPassword, clientIP()),
		} {
			if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "region_unavailable" || r.Header.Get("Retry-After") == "" {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		if r := e.login(t, "eu-west", unaffected, testPassword, clientIP()); r.Status != 200 {
			t.Errorf("a user whose regions are up: %d %s", r.Status, r.Body)
		}
	})
}

// other returns the region after r, so that each region is other() of exactly one.
func other(r string) string {
	for i, o := range apitest.Regions {
		if o == r {
			return apitest.Regions[(i+1)%len(apitest.Regions)]
		}
	}
	return r
}
