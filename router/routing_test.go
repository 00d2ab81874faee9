package router_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/router/routertest"
)

// Users of every region reach their home region from a router in every region, on both prefixes.
func TestUsersReachTheirRegionFromEveryRouter(t *testing.T) {
	env := routertest.New(t, routertest.Options{})
	routers := map[string]*routertest.Router{}
	for _, r := range routertest.Regions {
		routers[r] = env.StartRouter(t, r, nil)
	}
	for _, home := range routertest.Regions {
		u := env.User(t, home)
		for _, via := range routertest.Regions {
			for _, path := range []string{"/api/v1/users/me", "/api/users/me"} {
				a := do(t, routers[via], call{path: path, token: u.Token})
				s := mustEcho(t, a, home)
				if s.Path != path {
					t.Errorf("node saw path %q, want %q", s.Path, path)
				}
				if s.Header.Get("Authorization") != "Bearer "+u.Token {
					t.Errorf("the token did not reach the node")
				}
			}
		}
	}
}

// Each case names how the region is decided; the router is in us-east and the caller (when there is
// one) is a us-east user, so only the rule under test can send the request elsewhere.
func TestResolution(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	caller := env.User(t, "us-east")
	eu, ap := env.User(t, "eu-west"), env.User(t, "ap-south")
	job := env.NewID(t, shardkey.KindJob, ap.KSID)
	review := env.NewID(t, shardkey.KindReview, eu.KSID)
	key := env.NewID(t, shardkey.KindAPIKey, ap.KSID)

	cases := []struct {
		name string
		call call
		want string
	}{
		{"token", call{path: "/api/v1/users/settings", token: eu.Token}, "eu-west"},
		{"api key", call{path: "/api/v1/users/me", auth: "ApiKey " + env.APIKey(t, ap)}, "ap-south"},
		{"api key scheme is case-insensitive", call{path: "/api/v1/users/me", auth: "apikey " + env.APIKey(t, eu)}, "eu-west"},
		{"job in path", call{path: "/api/v1/jobs/" + job.String(), token: caller.Token}, "ap-south"},
		{"job in path, alias prefix", call{path: "/api/jobs/" + job.String()}, "ap-south"},
		{"job in path, write", call{method: http.MethodPatch, path: "/api/v1/jobs/" + job.String(), token: ap.Token, body: `{"title":"x"}`}, "ap-south"},
		{"review in path", call{path: "/api/v1/reviews/" + review.String(), token: caller.Token}, "eu-west"},
		{"public profile", call{path: "/api/v1/users/" + ap.ID.String() + "/profile"}, "ap-south"},
		{"api key in path", call{method: http.MethodDelete, path: "/api/v1/auth/api-keys/" + key.String(), token: ap.Token}, "ap-south"},
		{"owner_id", call{path: "/api/v1/jobs/?owner_id=" + eu.ID.String() + "&limit=5", token: caller.Token}, "eu-west"},
		{"user_id", call{path: "/api/v1/reviews/stats?user_id=" + ap.ID.String()}, "ap-south"},
		{"reviewee_id is not routed", call{method: http.MethodPost, path: "/api/v1/reviews/", token: caller.Token,
			body: `{"job_id":"` + job.String() + `","reviewee_id":"` + ap.ID.String() + `","rating":5}`}, "us-east"},
		{"search with the caller's region", call{path: "/api/v1/jobs/search?q=go", token: eu.Token}, "eu-west"},
		{"global search stays in the router's region", call{path: "/api/v1/jobs/search?q=go&scope=global", token: eu.Token}, "us-east"},
		{"malformed id goes by the caller", call{path: "/api/v1/jobs/job_nope", token: eu.Token}, "eu-west"},
		{"anonymous", call{path: "/api/v1/jobs/search?q=go"}, "us-east"},
		{"login", call{method: http.MethodPost, path: "/api/v1/auth/login", body: `{"email":"a@b.c","password":"0123456789"}`}, "us-east"},
		{"oauth", call{path: "/api/v1/auth/oauth/github"}, "us-east"},
		{"register with a region", call{method: http.MethodPost, path: "/api/v1/auth/register",
			body: `{"email":"x@y.z","password":"0123456789","name":"X","role":"client","region":"ap-south"}`}, "ap-south"},
		{"register without a region", call{method: http.MethodPost, path: "/api/v1/auth/register",
			body: `{"email":"x@y.z","password":"0123456789","name":"X","role":"client"}`}, "us-east"},
		{"register with an unknown region", call{method: http.MethodPost, path: "/api/v1/auth/register",
			body: `{"email":"x@y.z","password":"0123456789","name":"X","role":"client","region":"mars"}`}, "us-east"},
		{"refresh", call{method: http.MethodPost, path: "/api/v1/auth/refresh", body: `{"refresh_token":"` + env.RefreshToken(t, eu) + `"}`}, "eu-west"},
		{"refresh with an expired access token", call{method: http.MethodPost, path: "/api/auth/refresh", auth: "Bearer expired.garbage.token",
			body: `{"refresh_token":"` + env.RefreshToken(t, ap) + `"}`}, "ap-south"},
		{"logout", call{method: http.MethodPost, path: "/api/v1/auth/logout", token: caller.Token, body: `{"refresh_token":"` + env.RefreshToken(t, ap) + `"}`}, "ap-south"},
		{"logout with an expired access token", call{method: http.MethodPost, path: "/api/v1/auth/logout", auth: "Bearer expired.garbage.token",
			body: `{"refresh_token":"` + env.RefreshToken(t, eu) + `"}`}, "eu-west"},
		{"logout without a body goes by the caller", call{method: http.MethodPost, path: "/api/v1/auth/logout", token: eu.Token}, "eu-west"},
		{"unknown path under /api", call{path: "/api/v1/nothing/here", token: eu.Token}, "eu-west"},
		// The session endpoints go by their own rules only, whatever ID the client puts in the query.
		{"register ignores a user_id in the query", call{method: http.MethodPost, path: "/api/v1/auth/register?user_id=" + eu.ID.String(),
			body: `{"email":"x@y.z","password":"0123456789","name":"X","role":"client"}`}, "us-east"},
		{"register's region beats an owner_id in the query", call{method: http.MethodPost, path: "/api/v1/auth/register?owner_id=" + eu.ID.String(),
			body: `{"email":"x@y.z","password":"0123456789","name":"X","role":"client","region":"ap-south"}`}, "ap-south"},
		{"login ignores a user_id in the query", call{method: http.MethodPost, path: "/api/v1/auth/login?user_id=" + ap.ID.String(),
			body: `{"email":"a@b.c","password":"0123456789"}`}, "us-east"},
		{"oauth ignores a job_id in the query", call{path: "/api/v1/auth/oauth/github?job_id=" + job.String()}, "us-east"},
		{"oauth callback ignores a user_id in the query", call{path: "/api/v1/auth/oauth/github/callback?code=c&state=s&user_id=" + eu.ID.String()}, "us-east"},
		{"refresh ignores a user_id in the query", call{method: http.MethodPost, path: "/api/v1/auth/refresh?user_id=" + ap.ID.String(),
			body: `{"refresh_token":"` + env.RefreshToken(t, eu) + `"}`}, "eu-west"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := do(t, r, c.call)
			s := mustEcho(t, a, c.want)
			wantMethod := c.call.method
			if wantMethod == "" {
				wantMethod = http.MethodGet
			}
			if s.Method != wantMethod || s.Path+queryOf(s.Query) != c.call.path {
				t.Errorf("node saw %s %s?%s, want %s %s", s.Method, s.Path, s.Query, wantMethod, c.call.path)
			}
			if s.Body != c.call.body {
				t.Errorf("node saw body %q, want %q", s.Body, c.call.body)
			}
		})
	}
}

func queryOf(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// An ID that parses but whose keyspace ID no region owns cannot name an object: 404 at the edge.
func TestIDOfNoRegionIsNotFound(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	orphan := env.NewID(t, shardkey.KindJob, shardkey.NewKeyspaceID(0x7f, []byte("nowhere")))
	a := do(t, r, call{path: "/api/v1/jobs/" + orphan.String()})
	if a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
		t.Fatalf("got %d %s, want 404 not_found", a.status, a.body)
	}
	for _, region := range routertest.Regions {
		if n := env.TotalHits(region); n != 0 {
			t.Errorf("%d requests reached %s", n, region)
		}
	}
}

// The router's own paths are answered by the router, on its ops listener only: on the public listener
// they are a 404 like every path outside /api, and none of them reaches a node.
func TestOpsPathsAreTheRouters(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "eu-west", nil)
	u := env.User(t, "eu-west")
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "eu-west")

	for _, p := range []string{"/healthz", "/readyz"} {
		a := opsGet(t, r, p)
		if a.status != http.StatusOK || a.header.Get("X-Meridian-Region") != "eu-west" {
			t.Errorf("ops %s: %d %v %s", p, a.status, a.header, a.body)
		}
	}
	// The request is counted right after its answer is sent: poll.
	waitFor(t, "the request in /metrics", func() bool {
		a := opsGet(t, r, "/metrics")
		return a.status == http.StatusOK &&
			strings.Contains(string(a.body), `meridian_router_requests_total{code="200",method="GET",region="eu-west",route="/users/me"} 1`)
	})
	// The ops listener serves nothing else.
	if a := opsGet(t, r, "/api/v1/users/me"); a.status != http.StatusNotFound {
		t.Errorf("ops listener: /api/v1/users/me answered %d, want 404", a.status)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/debug/pprof/", "/api/../metrics", "/api/v1/../../healthz",
		"/api//v1/users/me", "/api/v1/./users/me", "/", "/apiv1/users/me"} {
		a := do(t, r, call{path: p, token: u.Token})
		if a.status != http.StatusNotFound || a.errorCode(t) != "not_found" || a.header.Get("X-Meridian-Region") != "eu-west" {
			t.Errorf("%s: got %d %s, want the router's 404", p, a.status, a.body)
		}
	}
	if n := env.TotalHits("eu-west"); n != 1 {
		t.Errorf("%d requests reached eu-west, want only the first", n)
	}
}

// The nodes' internal routes do not exist at the edge: any path under /api/v1/internal (or its /api
// alias, or percent-encoded), with any method, is the router's own 404, never forwarded, so neither a
// node's answer nor its 405 tells a client which internal routes there are.
func TestInternalPathsAreNotFoundAtTheEdge(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	u := env.User(t, "us-east")
	paths := []string{"/api/v1/internal", "/api/v1/internal/", "/api/v1/internal/login", "/api/v1/internal/oauth-login",
		"/api/v1/internal/email-claims/abc", "/api/v1/internal/users/" + u.ID.String() + "/exists", "/api/internal/login",
		"/api/v1/%69nternal/login", "/api/v1/internal/no-such-route"}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	for _, p := range paths {
		for _, m := range methods {
			a := do(t, r, call{method: m, path: p, token: u.Token, body: `{"email":"a@b.test"}`})
			if a.status != http.StatusNotFound || a.errorCode(t) != "not_found" || a.header.Get("X-Meridian-Region") != "us-east" {
				t.Errorf("%s %s: got %d %s, want the router's 404", m, p, a.status, a.body)
			}
		}
	}
	if n := env.TotalHits("us-east"); n != 0 {
		t.Errorf("%d internal requests reached a node", n)
	}
	// A public path that merely starts alike is the API's.
	mustEcho(t, do(t, r, call{path: "/api/v1/internals", token: u.Token}), "us-east")
}
