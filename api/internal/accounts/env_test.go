package accounts

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/mailer"
	"github.com/8thdegree/meridian/api/internal/revocation"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	testPepper   = []byte("test-email-pepper-0123456789")
	testStateKey = []byte("test-oauth-state-key-0123456789")
	// testParams keep tests quick; production costs are DefaultPasswordParams.
	testParams = argon2id.Params{Memory: 8 * 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}
)

// testIPBackoff lets a test reach a client address's waits in a few attempts.
var testIPBackoff = ratelimit.Backoff{Free: 3, Base: time.Second, Max: time.Minute, Window: time.Hour}

const (
	redirectBase = "http://meridian.test"
	testPassword = "correct horse battery staple"
)

// testClock is every node's clock; tests move it to expire things.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// env is three regional nodes serving the accounts routes, with a stand-in OAuth provider.
type env struct {
	*apitest.Harness
	svc map[string]*Service
	// rvk is each region's node's revocation service.
	rvk   map[string]*revocation.Service
	stub  *stubProvider
	clock *testClock
	// mailDir is every node's mail folder (one .eml per message).
	mailDir string
}

var seq atomic.Int64

func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	e := &env{svc: map[string]*Service{}, rvk: map[string]*revocation.Service{}, stub: newStubProvider(t), clock: &testClock{}, mailDir: t.TempDir()}
	params := testParams
	mail, err := mailer.NewDir(e.mailDir, "8thDegree <no-reply@meridian.test>")
	if err != nil {
		t.Fatal(err)
	}
	e.Harness = apitest.New(t, apitest.Options{
		Now: e.clock.Now,
		Routes: func(a *feature.Deps, tokens *tokenissue.Issuer) []feature.Route {
			rvk, err := revocation.New(a, revocation.DefaultConfig(time.Hour), FamilyLog{})
			if err != nil {
				t.Fatal(err)
			}
			// Each region's throttle counts in a Redis of its own, as in production (one server,
			// one logical database per region).
			rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t), DB: 1 + slices.Index(apitest.Regions, a.Region)})
			t.Cleanup(func() { rdb.Close() })
			lim := ratelimit.New(rdb, a.Log)
			lim.SetClock(e.clock.Now)
			cfg := Config{
				Tokens: tokens, EmailPepper: testPepper, StateKey: testStateKey, Limiter: lim,
				OAuth: e.stub.Configs(), RedirectBaseURL: redirectBase, PasswordParams: &params, TrustedProxies: loopback,
				IPBackoff: testIPBackoff, Mailer: mail, Revocations: rvk,
			}
			for _, m := range mutate {
				m(&cfg)
			}
			s, err := New(a, cfg)
			if err != nil {
				t.Fatal(err)
			}
			e.svc[a.Region], e.rvk[a.Region] = s, rvk
			return append(s.Routes(), rvk.Routes()...)
		},
		Revoked: func(a *feature.Deps) func(shardkey.ID) bool {
			return func(f shardkey.ID) bool { return e.rvk[a.Region].Revoked(f) }
		},
		APIKeys: func(a *feature.Deps) authn.APIKeyVerifier { return e.svc[a.Region] },
	})
	return e
}

// uniqueEmail makes an address no other test uses (Redis and its rate-limit keys are shared).
func uniqueEmail(t *testing.T, tag string) string {
	name := strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(t.Name()))
	name = name[max(len(name)-24, 0):] // local parts have at most 64 characters
	return fmt.Sprintf("%s-%s-%d-%d@example.test", strings.Trim(name, "-"), tag, seq.Add(1), time.Now().UnixNano()%1e9)
}

// clientIP gives each caller its own address, so per-IP login budgets do not leak between tests.
func clientIP() string {
	n := seq.Add(1) + time.Now().UnixNano()%1000*1000
	return fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff)
}

// fromIP says the request came through a trusted proxy (the harness's clients are on 127.0.0.1) for
// ip; the first hop is what a client could forge, and must not be taken for the client.
func fromIP(ip string) http.Header {
	return http.Header{"X-Forwarded-For": {"203.0.113.66, " + ip}}
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func (e *env) register(t *testing.T, region, email string, role authn.Role) tokenBundle {
	t.Helper()
	r := e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]any{"email": email, "password": testPassword, "name": "Ada " + role, "role": role}, Header: fromIP(clientIP())})
	if r.Status != http.StatusCreated {
		t.Fatalf("register %s in %s: %d %s", email, region, r.Status, r.Body)
	}
	var b tokenBundle
	r.JSON(t, &b)
	return b
}

func (e *env) login(t *testing.T, region, email, password, ip string) *apitest.Response {
	t.Helper()
	return e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/login",
		Body: map[string]string{"email": email, "password": password}, Header: fromIP(ip)})
}

// pool returns the shard that holds k's data.
func (e *env) pool(t *testing.T, k shardkey.KeyspaceID) *pgxpool.Pool {
	t.Helper()
	r, err := e.Pools.Route(k)
	if err != nil {
		t.Fatal(err)
	}
	return r.Pool
}

// actions lists the audit actions recorded about ksid, oldest first.
func (e *env) actions(t *testing.T, k shardkey.KeyspaceID) []string {
	t.Helper()
	entries, err := audit.List(context.Background(), e.pool(t, k), k, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(entries))
	for i, en := range entries {
		out[len(entries)-1-i] = en.Action
	}
	return out
}

func count(actions []string, action string) int {
	n := 0
	for _, a := range actions {
		if a == action {
			n++
		}
	}
	return n
}

// emailWithDirectory returns a fresh address whose claim lives in region.
func (e *env) emailWithDirectory(t *testing.T, region string) string {
	t.Helper()
	for {
		email := uniqueEmail(t, "dir")
		r, _, err := directory.Locate(e.Topology, directory.HashEmail(testPepper, email))
		if err != nil {
			t.Fatal(err)
		}
		if r.Name == region {
			return email
		}
	}
}

func regionOfKSID(e *env, k shardkey.KeyspaceID) string {
	r, ok := e.Topology.RegionByCode(k.Region())
	if !ok {
		return "?"
	}
	return r.Name
}
