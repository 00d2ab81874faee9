package accounts

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestRegister(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Run("in each region", func(t *testing.T) {
		for _, region := range apitest.Regions {
			email := uniqueEmail(t, region)
			b := e.register(t, region, "  "+strings.ToUpper(email)+" ", authn.Client)
			u := b.User
			if u.Email != email || u.Region != region || u.Role != authn.Client || u.ID.Kind() != shardkey.KindUser || u.CreatedAt.IsZero() {
				t.Fatalf("%s: user %+v", region, u)
			}
			if got := regionOfKSID(e, u.ID.KeyspaceID()); got != region {
				t.Errorf("%s: the user's ksid is homed in %s", region, got)
			}
			if b.TokenType != "Bearer" || b.ExpiresIn != 15*60 || !strings.HasPrefix(b.RefreshToken, "mrt_tfm_") {
				t.Errorf("%s: bundle %+v", region, b)
			}
			// The access token works for /users/me in the home region.
			r := e.Do(t, region, apitest.Request{Method: "GET", Path: "/api/v1/users/me", Token: b.AccessToken})
			var me userJSON
			r.JSON(t, &me)
			if r.Status != 200 || me.ID != u.ID || me.Email != email {
				t.Fatalf("%s: me: %d %s", region, r.Status, r.Body)
			}
			// One transaction made the user, the hash, the profile, the settings, a session and the trail.
			pool := e.pool(t, u.ID.KeyspaceID())
			k := u.ID.KeyspaceID().Bytes()
			var phc string
			var profiles, settings, families int
			if err := pool.QueryRow(ctx, `SELECT (SELECT password_hash FROM auth.credentials WHERE ksid = $1 AND user_id = $2),
				(SELECT count(*) FROM core.profiles WHERE ksid = $1 AND user_id = $2),
				(SELECT count(*) FROM core.settings WHERE ksid = $1 AND user_id = $2),
				(SELECT count(*) FROM auth.refresh_token_families WHERE ksid = $1 AND user_id = $2)`, k, u.ID.Bytes()).
				Scan(&phc, &profiles, &settings, &families); err != nil {
				t.Fatal(err)
			}
			if profiles != 1 || settings != 1 || families != 1 {
				t.Errorf("%s: profiles %d settings %d families %d", region, profiles, settings, families)
			}
			ok, p, err := argon2id.CheckHash(testPassword, phc)
			if err != nil || !ok || p.Memory != testParams.Memory || !strings.HasPrefix(phc, "$argon2id$v=19$m=8192,t=1,p=1$") {
				t.Errorf("%s: stored hash %q: ok=%v params=%+v err=%v", region, phc, ok, p, err)
			}
			if strings.Contains(phc, testPassword) {
				t.Error("the password is stored")
			}
			if got := e.actions(t, u.ID.KeyspaceID()); count(got, audit.ActionRegister) != 1 {
				t.Errorf("%s: audit %v", region, got)
			}
			// The directory knows the email only by its keyed hash.
			c, found, err := e.svc["us-east"].dir.Lookup(ctx, directory.HashEmail(testPepper, email))
			if err != nil || !found || c.UserID != u.ID || c.HomeRegion != region {
				t.Errorf("%s: claim %+v %v %v", region, c, found, err)
			}
		}
	})

	t.Run("chosen home region is replayed there", func(t *testing.T) {
		email := uniqueEmail(t, "replay")
		body := map[string]any{"email": email, "password": testPassword, "name": "Replayed", "role": "freelancer", "region": "ap-south"}
		r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/auth/register", Body: body})
		if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "ap-south" || r.ErrorCode() != "wrong_region" {
			t.Fatalf("foreign region: %d %s %v", r.Status, r.Body, r.Header)
		}
		// Nothing was claimed by the refused request.
		if _, found, _ := e.svc["eu-west"].dir.Lookup(ctx, directory.HashEmail(testPepper, email)); found {
			t.Error("a refused registration left a claim")
		}
		r = e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/register", Body: body})
		var b tokenBundle
		r.JSON(t, &b)
		if r.Status != 201 || b.User.Region != "ap-south" || regionOfKSID(e, b.User.ID.KeyspaceID()) != "ap-south" {
			t.Fatalf("replayed: %d %s", r.Status, r.Body)
		}
	})

	t.Run("email is unique across regions", func(t *testing.T) {
		email := uniqueEmail(t, "taken")
		first := e.register(t, "us-east", email, authn.Freelancer)
		for _, region := range []string{"eu-west", "ap-south", "us-east"} {
			for _, spelling := range []string{email, " " + strings.ToUpper(email) + "\t"} {
				r := e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
					Body: map[string]any{"email": spelling, "password": "another password", "name": "Eve", "role": "client"}})
				if r.Status != http.StatusConflict || r.ErrorCode() != "email_taken" {
					t.Errorf("%s %q: %d %s", region, spelling, r.Status, r.Body)
				}
			}
		}
		// The losers left no user behind and the claim still names the first user.
		c, found, err := e.svc["ap-south"].dir.Lookup(ctx, directory.HashEmail(testPepper, email))
		if err != nil || !found || c.UserID != first.User.ID {
			t.Errorf("claim after conflicts: %+v %v %v", c, found, err)
		}
		for _, tg := range e.Pools.Targets("") {
			var n int
			if err := tg.Pool.QueryRow(ctx, `SELECT count(*) FROM auth.users WHERE email_normalized = $1`, email).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[tg.Pool == e.pool(t, first.User.ID.KeyspaceID())]; n != want {
				t.Errorf("shard %s holds %d users with the email", tg.Shard, n)
			}
		}
	})

	t.Run("Unicode spellings of one address are one account", func(t *testing.T) {
		tag := strings.TrimSuffix(uniqueEmail(t, "u"), "@example.test")
		nfc := tag + "-jos\u00e9@m\u00fcnchen.example"   // é and ü as single code points
		nfd := tag + "-jose\u0301@mu\u0308nchen.example" // e, u and combining marks
		upper := strings.ToUpper(tag) + "-JOS\u00c9@XN--MNCHEN-3YA.EXAMPLE"
		first := e.register(t, "eu-west", nfc, authn.Freelancer)
		if want := tag + "-jos\u00e9@xn--mnchen-3ya.example"; first.User.Email != want {
			t.Errorf("stored as %q, want %q", first.User.Email, want)
		}
		for _, region := range apitest.Regions {
			for _, spelling := range []string{nfd, upper} {
				r := e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
					Body: map[string]any{"email": spelling, "password": "another password", "name": "Eve", "role": "client"}})
				if r.Status != http.StatusConflict || r.ErrorCode() != "email_taken" {
					t.Errorf("%s %q: %d %s", region, spelling, r.Status, r.Body)
				}
				var b tokenBundle
				r = e.login(t, region, spelling, testPassword, clientIP())
				if r.JSON(t, &b); r.Status != 200 || b.User.ID != first.User.ID {
					t.Errorf("login as %q via %s: %d %s", spelling, region, r.Status, r.Body)
				}
			}
		}
	})

	t.Run("concurrent registrations of one email in every region", func(t *testing.T) {
		email := uniqueEmail(t, "race")
		var wg sync.WaitGroup
		statuses := make(chan int, 6)
		for range 2 {
			for _, region := range apitest.Regions {
				wg.Go(func() {
					r := e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
						Body: map[string]any{"email": email, "password": testPassword, "name": "Racer", "role": "client"}})
					statuses <- r.Status
				})
			}
		}
		wg.Wait()
		close(statuses)
		won, lost := 0, 0
		for s := range statuses {
			switch s {
			case 201:
				won++
			case 409:
				lost++
			default:
				t.Errorf("status %d", s)
			}
		}
		if won != 1 || lost != 5 {
			t.Errorf("won %d, lost %d", won, lost)
		}
	})

	t.Run("a failed creation releases its claim", func(t *testing.T) {
		// The email already sits, unclaimed, on every us-east shard (as if it predated the directory),
		// so whichever shard the new user hashes to refuses it after the claim succeeded. The claim is
		// released locally (directory us-east) or through the directory region's Internal route.
		for _, dir := range []string{"us-east", "ap-south"} {
			email := e.emailWithDirectory(t, dir)
			for _, tg := range e.Pools.Targets("us-east") {
				ksid := shardkey.NewKeyspaceID(0x20, []byte(email+tg.Shard))
				for {
					if r, _ := e.Pools.Route(ksid); r.Shard == tg.Shard {
						break
					}
					ksid = shardkey.NewKeyspaceID(0x20, ksid.Bytes())
				}
				id, _ := e.IDs.New(shardkey.KindUser, ksid)
				if _, err := tg.Pool.Exec(ctx, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, $3, $3, 'Old', 'client', 'us-east')`,
					ksid.Bytes(), id.Bytes(), email); err != nil {
					t.Fatal(err)
				}
			}
			r := e.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
				Body: map[string]any{"email": email, "password": testPassword, "name": "New", "role": "client"}})
			if r.Status != http.StatusConflict || r.ErrorCode() != "email_taken" {
				t.Fatalf("directory %s: register over an unclaimed duplicate: %d %s", dir, r.Status, r.Body)
			}
			if c, found, err := e.svc["eu-west"].dir.Lookup(ctx, directory.HashEmail(testPepper, email)); err != nil || found {
				t.Errorf("directory %s: the claim was not released: %+v %v %v", dir, c, found, err)
			}
		}
	})

	t.Run("orphaned claims", func(t *testing.T) {
		// A claim whose user never appeared (a registration that crashed after claiming).
		orphan := func(email string, age time.Duration) {
			h := directory.HashEmail(testPepper, email)
			_, ksid, err := directory.Locate(e.Topology, h)
			if err != nil {
				t.Fatal(err)
			}
			ghost, _ := e.IDs.New(shardkey.KindUser, shardkey.NewKeyspaceID(0x40, []byte(email)))
			if _, err := e.pool(t, ksid).Exec(ctx, `INSERT INTO auth.email_claims (ksid, email_hash, user_id, home_region, created_at) VALUES ($1, $2, $3, 'eu-west', $4)`,
				ksid.Bytes(), h[:], ghost.Bytes(), e.clock.Now().Add(-age)); err != nil {
				t.Fatal(err)
			}
		}
		young, old := uniqueEmail(t, "young"), uniqueEmail(t, "old")
		orphan(young, time.Minute)
		orphan(old, 10*time.Minute)
		r := e.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
			Body: map[string]any{"email": young, "password": testPassword, "name": "Young", "role": "client"}})
		if r.Status != http.StatusConflict {
			t.Errorf("a young orphan may still be a registration in progress: %d %s", r.Status, r.Body)
		}
		b := e.register(t, "ap-south", old, authn.Client)
		c, found, err := e.svc["us-east"].dir.Lookup(ctx, directory.HashEmail(testPepper, old))
		if err != nil || !found || c.UserID != b.User.ID || c.HomeRegion != "ap-south" {
			t.Errorf("the old orphan was not taken over: %+v %v %v", c, found, err)
		}
		if r := e.login(t, "eu-west", old, testPassword, clientIP()); r.Status != 200 {
			t.Errorf("login after a takeover: %d %s", r.Status, r.Body)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		good := func() map[string]any {
			return map[string]any{"email": uniqueEmail(t, "bad"), "password": testPassword, "name": "Bob", "role": "client"}
		}
		with := func(k string, v any) map[string]any { m := good(); m[k] = v; return m }
		without := func(k string) map[string]any { m := good(); delete(m, k); return m }
		for _, tc := range []struct {
			name  string
			body  any
			field string
		}{
			{"short password", with("password", "123456789"), "password"},
			{"long password", with("password", strings.Repeat("p", 1025)), "password"},
			{"no password", without("password"), "password"},
			{"bad email", with("email", "not-an-email"), "email"},
			{"display-name email", with("email", "Bob <bob@example.test>"), "email"},
			{"dotless domain", with("email", "bob@localhost"), "email"},
			{"long email", with("email", strings.Repeat("a", 250)+"@example.test"), "email"},
			{"no email", without("email"), "email"},
			{"blank name", with("name", "   "), "name"},
			{"long name", with("name", strings.Repeat("n", 201)), "name"},
			{"control in name", with("name", "Bo\x00b"), "name"},
			{"admin role", with("role", "admin"), "role"},
			{"no role", without("role"), "role"},
			{"unknown region", with("region", "mars-1"), "region"},
			{"unknown field", with("is_admin", true), "is_admin"},
			{"wrong type", with("password", 1234567890123), "password"},
		} {
			r := e.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/register", Body: tc.body})
			var body struct {
				Error struct {
					Code   string            `json:"code"`
					Fields map[string]string `json:"fields"`
				} `json:"error"`
			}
			r.JSON(t, &body)
			if r.Status != 400 || body.Error.Code != "invalid_request" || body.Error.Fields[tc.field] == "" {
				t.Errorf("%s: %d %s", tc.name, r.Status, r.Body)
			}
		}
		for name, tc := range map[string]struct {
			body   any
			header map[string][]string
			status int
		}{
			"malformed JSON":  {`{"email": `, nil, 400},
			"two values":      {`{} {}`, nil, 400},
			"not an object":   {`[]`, nil, 400},
			"empty body":      {``, nil, 400},
			"not JSON":        {`email=a`, map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, 415},
			"oversized body":  {`{"name": "` + strings.Repeat("x", 1<<20) + `"}`, nil, 413},
			"null everywhere": {`{"email": null, "password": null, "name": null, "role": null}`, nil, 400},
		} {
			r := e.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/register", Body: tc.body, Header: tc.header})
			if r.Status != tc.status {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
	})
}
