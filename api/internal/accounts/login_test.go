package accounts

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

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

	wantWait := func(t *testing.T, r *apitest.Response, wait int, what string) {
		t.Helper()
		if retry, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != http.StatusTooManyRequests || r.ErrorCode() != "rate_limited" || retry != wait {
			t.Fatalf("%s: %d %s Retry-After %q, want 429 with Retry-After %d", what, r.Status, r.Body, r.Header.Get("Retry-After"), wait)
		}
		// A forwarded answer looks like a local one: Retry-After only, no budget headers to tell
		// where the account lives.
		if r.Header.Get("RateLimit-Limit") != "" || r.Header.Get("RateLimit-Remaining") != "" {
			t.Errorf("%s: budget headers on a login throttle: %v", what, r.Header)
		}
	}

	t.Run("failures per account slow it down across regions and never lock it out", func(t *testing.T) {
		email := uniqueEmail(t, "limited")
		e.register(t, "ap-south", email, authn.Client)
		free := DefaultAccountBackoff.Free
		// The free failures and one more, spread over every region and many addresses: one count,
		// kept by the home region.
		for i := range free + 1 {
			if r := e.login(t, apitest.Regions[i%3], email, "wrong password!", clientIP()); r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		// Now the account waits a second, whichever region is asked, even with the right password.
		for _, entry := range apitest.Regions {
			wantWait(t, e.login(t, entry, email, testPassword, clientIP()), 1, "right password during the wait via "+entry)
		}
		// Another failure after the wait doubles it.
		e.clock.Advance(time.Second)
		if r := e.login(t, "us-east", email, "wrong password!", clientIP()); r.Status != 401 {
			t.Fatalf("failure after the wait: %d %s", r.Status, r.Body)
		}
		wantWait(t, e.login(t, "eu-west", email, testPassword, clientIP()), 2, "after one more failure")
		// Once it is over the right password logs in, and the count starts over.
		e.clock.Advance(2 * time.Second)
		if r := e.login(t, "eu-west", email, testPassword, clientIP()); r.Status != 200 {
			t.Fatalf("right password after the wait: %d %s", r.Status, r.Body)
		}
		for i := range free {
			if r := e.login(t, "us-east", email, "wrong password!", clientIP()); r.Status != 401 {
				t.Fatalf("free failure %d after a success: %d %s", i+1, r.Status, r.Body)
			}
		}
		// Another account is not affected.
		if r := e.login(t, "ap-south", emails["ap-south"], testPassword, clientIP()); r.Status != 200 {
			t.Errorf("another account: %d %s", r.Status, r.Body)
		}
	})

	t.Run("successes cost the client address nothing", func(t *testing.T) {
		ip := clientIP() // a NAT: many users, one address
		for i := range 4 * (testIPBackoff.Free + 10) {
			home := apitest.Regions[i%3]
			if r := e.login(t, apitest.Regions[(i+1)%3], emails[home], testPassword, ip); r.Status != 200 {
				t.Fatalf("login %d from one address: %d %s", i+1, r.Status, r.Body)
			}
		}
	})

	t.Run("failures per client address slow it down across entry regions", func(t *testing.T) {
		// Wrong passwords on different accounts of eu-west, sent through every region.
		ip := clientIP()
		for i := range testIPBackoff.Free + 1 {
			email := uniqueEmail(t, "spray")
			e.register(t, "eu-west", email, authn.Client)
			if r := e.login(t, apitest.Regions[i%3], email, "wrong password!", ip); r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		// The address now waits, for any eu-west account, through any region.
		for _, entry := range apitest.Regions {
			wantWait(t, e.login(t, entry, emails["eu-west"], testPassword, ip), 1, "the right password of another account via "+entry)
		}
		if r := e.login(t, "us-east", emails["eu-west"], testPassword, clientIP()); r.Status != 200 {
			t.Errorf("another address: %d %s", r.Status, r.Body)
		}
		e.clock.Advance(time.Second)
		if r := e.login(t, "ap-south", emails["eu-west"], testPassword, ip); r.Status != 200 {
			t.Errorf("after the wait: %d %s", r.Status, r.Body)
		}
	})

	t.Run("an IPv6 client is counted by its /64", func(t *testing.T) {
		n := seq.Add(1)
		in := func(host int) string { return fmt.Sprintf("2001:db8:%x:%x::%x", n>>16&0xffff, n&0xffff, host) }
		// Emails nobody has: counted in the region that took them.
		for i := range testIPBackoff.Free + 1 {
			if r := e.login(t, "us-east", uniqueEmail(t, "v6"), testPassword, in(i+1)); r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		wantWait(t, e.login(t, "us-east", uniqueEmail(t, "v6"), testPassword, in(0xbeef)), 1, "another address of the /64")
		other := fmt.Sprintf("2001:db8:%x:%x::1", n>>16&0xffff, (n+1)&0xffff)
		if r := e.login(t, "us-east", uniqueEmail(t, "v6"), testPassword, other); r.Status != 401 {
			t.Errorf("the next /64: %d %s", r.Status, r.Body)
		}
	})

	t.Run("deleted users cannot log in", func(t *testing.T) {
		email := uniqueEmail(t, "deleted")
		b := e.register(t, "us-east", email, authn.Client)
		if _, err := e.pool(t, b.User.ID.KeyspaceID()).Exec(ctx, `UPDATE auth.users SET deleted_at = greatest(now(), created_at) WHERE ksid = $1 AND id = $2`,
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
