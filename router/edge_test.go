package router_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/router"
	"github.com/8thdegree/meridian/router/internal/traceparent"
	"github.com/8thdegree/meridian/router/routertest"
)

// Nothing a client says about where it comes from, which request this is, or who it is on the
// inside reaches a node.
func TestSpoofedHeadersDoNotGetThrough(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	u := env.User(t, "us-east")
	spoofed := http.Header{
		"X-Forwarded-For":          {"6.6.6.6"},
		"X-Forwarded-Host":         {"evil.example"},
		"X-Forwarded-Proto":        {"https"},
		"Forwarded":                {"for=6.6.6.6;proto=https"},
		"X-Real-Ip":                {"6.6.6.6"},
		"X-Request-Id":             {"client-chosen-id"},
		"X-Meridian-Internal":      {"guessed-secret"},
		"X-Meridian-User":          {u.ID.String()},
		"X-Meridian-Region":        {"ap-south"},
		"X-Meridian-Replayed-From": {"eu-west"},
		"Connection":               {"X-Sneaky"},
		"X-Sneaky":                 {"hop-by-hop by the client's own say-so"},
		"X-Custom":                 {"kept"},
	}
	a := do(t, r, call{path: "/api/v1/users/me", token: u.Token, header: spoofed})
	s := mustEcho(t, a, "us-east")
	h := s.Header
	if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %v, want the connection's address only", got)
	}
	if got := h.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto %q, want http", got)
	}
	if got := h.Get("X-Forwarded-Host"); got != strings.TrimPrefix(r.URL, "http://") {
		t.Errorf("X-Forwarded-Host %q, want the Host the client connected to", got)
	}
	for k := range h {
		if strings.HasPrefix(k, "X-Meridian-") || k == "Forwarded" || k == "X-Real-Ip" || k == "X-Sneaky" {
			t.Errorf("%s reached the node: %v", k, h[k])
		}
	}
	if rid := h.Get("X-Request-Id"); rid == "client-chosen-id" || rid == "" || rid != a.header.Get("X-Request-ID") {
		t.Errorf("node saw X-Request-ID %q, client got %q; want the router's own, the same", rid, a.header.Get("X-Request-ID"))
	}
	if h.Get("X-Custom") != "kept" {
		t.Errorf("an ordinary header was dropped")
	}
}

// Behind a trusted load balancer, the client is the rightmost untrusted X-Forwarded-For hop.
func TestTrustedProxy(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", func(c *router.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	})
	a := do(t, r, call{path: "/api/v1/jobs/search", header: http.Header{
		"X-Forwarded-For": {"6.6.6.6, 203.0.113.7, 10.1.2.3"}, "X-Forwarded-Proto": {"https"},
	}})
	s := mustEcho(t, a, "us-east")
	if got := s.Header.Get("X-Forwarded-For"); got != "203.0.113.7" {
		t.Errorf("X-Forwarded-For %q, want 203.0.113.7", got)
	}
	if got := s.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto %q, want the trusted proxy's https", got)
	}
}

func TestRequestIDAndTraceContext(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)

	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	a := do(t, r, call{path: "/api/v1/jobs/search", header: http.Header{"Traceparent": {incoming}, "Tracestate": {"vendor=1"}}})
	s := mustEcho(t, a, "us-east")
	got, ok := traceparent.Parse(s.Header.Get("Traceparent"))
	in, _ := traceparent.Parse(incoming)
	if !ok || got.TraceID != in.TraceID || got.SpanID == in.SpanID || got.Flags != 1 {
		t.Errorf("traceparent %q does not continue %q with a new span", s.Header.Get("Traceparent"), incoming)
	}
	if s.Header.Get("Tracestate") != "vendor=1" {
		t.Errorf("tracestate %q was not passed on", s.Header.Get("Tracestate"))
	}
	log := r.AccessLog(a.header.Get("X-Request-ID"))
	if log == nil || log["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("access log does not carry the trace: %v", log)
	}

	ids := map[string]bool{}
	for _, bad := range []string{"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "garbage", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		a := do(t, r, call{path: "/api/v1/jobs/search", header: http.Header{"Traceparent": {bad}, "Tracestate": {"vendor=1"}}})
		s := mustEcho(t, a, "us-east")
		got, ok := traceparent.Parse(s.Header.Get("Traceparent"))
		if !ok || (bad != "" && strings.Contains(bad, fmt.Sprintf("%x", got.TraceID))) {
			t.Errorf("for traceparent %q the node saw %q, want a new trace", bad, s.Header.Get("Traceparent"))
		}
		if s.Header.Get("Tracestate") != "" {
			t.Errorf("tracestate passed on without a valid traceparent")
		}
		rid := a.header.Get("X-Request-ID")
		if len(rid) != 24 || ids[rid] || s.Header.Get("X-Request-Id") != rid {
			t.Errorf("request ID %q: not fresh, or not the node's", rid)
		}
		ids[rid] = true
	}
}

func TestBodyLimit(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	u := env.User(t, "us-east")
	limit := router.DefaultConfig().MaxBodyBytes

	a := do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs/", token: u.Token, body: strings.Repeat("a", int(limit))})
	if s := mustEcho(t, a, "us-east"); s.BodyLen != int(limit) {
		t.Errorf("node got %d bytes of %d", s.BodyLen, limit)
	}
	a = do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs/", token: u.Token, body: strings.Repeat("a", int(limit)+1)})
	if a.status != http.StatusRequestEntityTooLarge || a.errorCode(t) != "request_too_large" {
		t.Fatalf("got %d %s, want 413", a.status, a.body)
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	req, _ := http.NewRequest(http.MethodPost, r.URL+"/api/v1/jobs/", &chunked{n: int(limit) + 10})
	req.Header.Set("Authorization", "Bearer "+u.Token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked: got %d, want 413", resp.StatusCode)
	}
	if n := env.TotalHits("us-east"); n != 1 {
		t.Errorf("%d requests reached the node, want 1", n)
	}
}

// chunked is a body of unknown length.
type chunked struct{ n int }

func (c *chunked) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n)
	for i := range p[:k] {
		p[i] = 'b'
	}
	c.n -= k
	return k, nil
}

// Bad tokens are refused at the edge with 401, and never reach a node.
func TestBadTokensAreRefusedAtTheEdge(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "eu-west", nil)
	u := env.User(t, "eu-west")
	now := time.Now()

	mint := func(cfg tokenissue.Config, keys *tokenissue.SigningKeys, at time.Time) string {
		tk, err := tokenissue.New(cfg, keys, func() time.Time { return at })
		if err != nil {
			t.Fatal(err)
		}
		s, _, err := tk.Issue(accesstoken.Subject{UserID: u.ID, KSID: u.KSID, Role: "client", Region: "eu-west"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := tokenissue.Config{Issuer: routertest.Issuer, Audience: routertest.Audience, TTL: time.Hour}
	other, _ := tokenissue.GenerateKey()
	otherSet, _ := tokenissue.NewSigningKeys(other)
	wrongAud, wrongIss := good, good
	wrongAud.Audience, wrongIss.Issuer = "someone-else", "https://evil.example"

	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`))
	claims, _ := json.Marshal(map[string]any{"iss": routertest.Issuer, "aud": routertest.Audience, "sub": u.ID.String(),
		"ksid": u.KSID.String(), "role": "admin", "region": "eu-west", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	algNone := header + "." + base64.RawURLEncoding.EncodeToString(claims) + "."
	valid := mint(good, env.Keys, now)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(claims) + "." + parts[2]

	cases := []struct{ name, auth, wantMsg string }{
		{"alg none", "Bearer " + algNone, "invalid access token"},
		{"expired", "Bearer " + mint(good, env.Keys, now.Add(-3*time.Hour)), "the access token has expired"},
		{"wrong audience", "Bearer " + mint(wrongAud, env.Keys, now), "invalid access token"},
		{"wrong issuer", "Bearer " + mint(wrongIss, env.Keys, now), "invalid access token"},
		{"unknown key", "Bearer " + mint(good, otherSet, now), "invalid access token"},
		{"tampered claims", "Bearer " + tampered, "invalid access token"},
		{"refresh token as access token", "Bearer " + env.RefreshToken(t, u), "invalid access token"},
		{"garbage", "Bearer not-a-token", "invalid access token"},
		{"empty bearer", "Bearer ", "invalid access token"},
		{"malformed API key", "ApiKey mk_nope", "malformed API key"},
		{"API key of the wrong kind", "ApiKey mk_" + u.ID.String() + "_" + strings.Repeat("A", 43), "malformed API key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := do(t, r, call{path: "/api/v1/users/me", auth: c.auth})
			if a.status != http.StatusUnauthorized || a.errorCode(t) != "unauthenticated" {
				t.Fatalf("got %d %s, want 401 unauthenticated", a.status, a.body)
			}
			if !strings.Contains(string(a.body), c.wantMsg) {
				t.Errorf("message %s, want %q", a.body, c.wantMsg)
			}
			if a.header.Get("X-Meridian-Region") != "eu-west" {
				t.Errorf("X-Meridian-Region %q on the router's answer", a.header.Get("X-Meridian-Region"))
			}
		})
	}
	if n := env.TotalHits("eu-west"); n != 0 {
		t.Fatalf("%d bad requests reached a node", n)
	}
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", auth: "Bearer " + valid}), "eu-west")
	// A scheme the edge does not know is the node's to judge.
	mustEcho(t, do(t, r, call{path: "/api/v1/jobs/search", auth: "Basic dXNlcjpwYXNz"}), "eu-west")
}

// When the nodes start signing with a new key, the router fetches the new key set the first time it
// meets the new key ID; when a key is retired, its tokens stop passing at the next refresh.
func TestKeyRotation(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "eu-west", func(c *router.Config) { c.JWKSRefresh = 200 * time.Millisecond })
	u := env.User(t, "eu-west")
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "eu-west")

	oldKey := env.Keys
	next, _ := tokenissue.GenerateKey()
	var keys []accesstoken.Key
	var jw struct {
		Keys []struct{ Kid, X string } `json:"keys"`
	}
	_ = json.Unmarshal(oldKey.JWKS(), &jw)
	for _, k := range jw.Keys {
		pub, _ := base64.RawURLEncoding.DecodeString(k.X)
		keys = append(keys, accesstoken.Key{ID: k.Kid, Public: pub})
	}
	both, err := tokenissue.NewSigningKeys(next, keys...)
	if err != nil {
		t.Fatal(err)
	}
	env.SetJWKS(both.JWKS())
	tokens, _ := tokenissue.New(tokenissue.Config{Issuer: routertest.Issuer, Audience: routertest.Audience, TTL: time.Hour}, both, nil)
	fresh, _, _ := tokens.Issue(accesstoken.Subject{UserID: u.ID, KSID: u.KSID, Role: "client", Region: "eu-west"})
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: fresh}), "eu-west")
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "eu-west")
	if !strings.Contains(grep(r.Logs(), "token key set in service"), `"keys":2`) {
		t.Errorf("the router did not take the new key set")
	}

	onlyNew, _ := tokenissue.NewSigningKeys(next)
	env.SetJWKS(onlyNew.JWKS())
	waitFor(t, "the old key's tokens to be refused", func() bool {
		return do(t, r, call{path: "/api/v1/users/me", token: u.Token}).status == http.StatusUnauthorized
	})
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: fresh}), "eu-west")
}

// A principal's limit is one budget for every router of the region: requests spread over two routers
// get exactly Burst through, and a refusal carries Retry-After and RateLimit headers.
func TestRateLimitsHoldAcrossRouters(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	const burst = 5
	limits := func(c *router.Config) {
		c.PrincipalLimit = ratelimit.Limit{Rate: burst, Period: time.Hour, Burst: burst}
		c.IPLimit = ratelimit.Limit{Rate: burst, Period: time.Hour, Burst: burst}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	a, b := env.StartRouter(t, "us-east", limits), env.StartRouter(t, "us-east", limits)

	t.Run("per principal", func(t *testing.T) {
		u := env.User(t, "eu-west")
		passed, refused := 0, 0
		for i := range 12 {
			r := []*routertest.Router{a, b}[i%2]
			// A different client address each time: only the principal's limit can apply.
			ans := do(t, r, call{path: "/api/v1/users/me", token: u.Token, header: http.Header{"X-Forwarded-For": {randomIP()}}})
			switch ans.status {
			case http.StatusOK:
				passed++
			case http.StatusTooManyRequests:
				refused++
				assertLimited(t, ans)
			default:
				t.Fatalf("status %d: %s", ans.status, ans.body)
			}
		}
		if passed != burst || refused != 12-burst {
			t.Fatalf("%d passed and %d were refused, want %d and %d", passed, refused, burst, 12-burst)
		}
	})
	t.Run("per IP", func(t *testing.T) {
		ip := randomIP()
		passed := 0
		for i := range 10 {
			r := []*routertest.Router{a, b}[i%2]
			ans := do(t, r, call{path: "/api/v1/jobs/search", header: http.Header{"X-Forwarded-For": {ip}}})
			switch ans.status {
			case http.StatusOK:
				passed++
			case http.StatusTooManyRequests:
				assertLimited(t, ans)
			}
		}
		if passed != burst {
			t.Fatalf("%d passed, want %d", passed, burst)
		}
		// Another address is not affected.
		mustEcho(t, do(t, a, call{path: "/api/v1/jobs/search", header: http.Header{"X-Forwarded-For": {randomIP()}}}), "us-east")
	})
}

func assertLimited(t *testing.T, a answer) {
	t.Helper()
	if a.errorCode(t) != "rate_limited" || a.header.Get("Retry-After") == "" || a.header.Get("RateLimit-Limit") != "5" ||
		a.header.Get("RateLimit-Remaining") != "0" {
		t.Errorf("refusal without the contract's headers: %v %s", a.header, a.body)
	}
}

func randomIP() string {
	return fmt.Sprintf("198.51.%d.%d", rand.IntN(256), 1+rand.IntN(254))
}

// With Redis unreachable, limits are enforced per router instead of not at all.
func TestRateLimitsWithoutRedis(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", func(c *router.Config) {
		c.RedisAddr = "127.0.0.1:1" // nothing listens there
		c.PrincipalLimit = ratelimit.Limit{Rate: 3, Period: time.Hour, Burst: 3}
	})
	u := env.User(t, "us-east")
	passed := 0
	for range 8 {
		a := do(t, r, call{path: "/api/v1/users/me", token: u.Token})
		switch a.status {
		case http.StatusOK:
			passed++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d: %s", a.status, a.body)
		}
	}
	if passed != 3 {
		t.Fatalf("%d passed, want 3", passed)
	}
}

// A node refuses a token whose session ended and says so in X-Meridian-Token-Revoked: the router then
// refuses that token itself (the node sees it no more), strips the header, and other tokens of the
// same user still pass.
func TestRevokedTokenIsRefusedAtTheEdgeAfterTheNodeSaysSo(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "eu-west", nil)
	ended := env.User(t, "eu-west")
	other := env.User(t, "eu-west")
	node := env.Nodes("eu-west")[0]
	node.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") == "Bearer "+ended.Token {
			w.Header().Set(wire.TokenRevoked, "1")
			apierror.Write(w, apierror.Unauthenticated("the session of this access token has ended; log in again"), "")
			return
		}
		node.Echo().ServeHTTP(w, req)
	}))

	first := do(t, r, call{path: "/api/v1/users/me", auth: "Bearer " + ended.Token})
	if first.status != http.StatusUnauthorized || first.header.Get(wire.TokenRevoked) != "" {
		t.Fatalf("node's refusal: %d %s, header %q (the router must strip it)", first.status, first.body, first.header.Get(wire.TokenRevoked))
	}
	hits := node.Hits()
	for range 3 {
		a := do(t, r, call{path: "/api/v1/users/me", auth: "Bearer " + ended.Token})
		if a.status != http.StatusUnauthorized || !strings.Contains(string(a.body), "session of this access token has ended") {
			t.Fatalf("after the node's refusal: %d %s", a.status, a.body)
		}
	}
	if n := node.Hits() - hits; n != 0 {
		t.Errorf("%d requests with the revoked token reached the node; the router must refuse it itself", n)
	}
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", auth: "Bearer " + other.Token}), "eu-west")

	// A 401 without the header (an expired or unknown session the node judged) does not revoke.
	plain := env.User(t, "eu-west")
	node.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		apierror.Write(w, apierror.Unauthenticated("no"), "")
	}))
	_ = do(t, r, call{path: "/api/v1/users/me", auth: "Bearer " + plain.Token})
	hits = node.Hits()
	_ = do(t, r, call{path: "/api/v1/users/me", auth: "Bearer " + plain.Token})
	if node.Hits() == hits {
		t.Error("a plain 401 made the router refuse the token itself")
	}
}

// An API key's budget is charged only for requests a node verified: made-up secrets with a victim's key
// ID (which is not secret) spend the sender's IP budget, never the key's, so they cannot starve the
// real key. The real key's budget still holds.
func TestAPIKeyBudgetIsChargedOnlyOnceVerified(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	const burst = 5
	r := env.StartRouter(t, "us-east", func(c *router.Config) {
		c.PrincipalLimit = ratelimit.Limit{Rate: burst, Period: time.Hour, Burst: burst}
		c.IPLimit = ratelimit.Limit{Rate: 2 * burst, Period: time.Hour, Burst: 2 * burst}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	victim := env.User(t, "eu-west")
	key := env.APIKey(t, victim)
	kid := strings.TrimSuffix(strings.TrimPrefix(key, "mk_"), "_"+routertest.APIKeySecret)
	bogus := "ApiKey mk_" + kid + "_" + strings.Repeat("B", 43)

	// An attacker at one address: its bogus keys are refused by the node until its own IP budget ends.
	attacker := http.Header{"X-Forwarded-For": {randomIP()}}
	refused, limited := 0, 0
	for range 3 * burst {
		a := do(t, r, call{path: "/api/v1/users/me", auth: bogus, header: attacker})
		switch a.status {
		case http.StatusUnauthorized:
			refused++
		case http.StatusTooManyRequests:
			limited++
			assertLimitedBy(t, a, 2*burst)
		default:
			t.Fatalf("bogus key: status %d: %s", a.status, a.body)
		}
	}
	if refused != 2*burst || limited != burst {
		t.Fatalf("bogus keys: %d refused by the node and %d limited, want %d and %d (the attacker's IP budget)", refused, limited, 2*burst, burst)
	}
	// Attackers at many addresses: still nothing of the key's budget.
	for range 2 * burst {
		if a := do(t, r, call{path: "/api/v1/users/me", auth: bogus, header: http.Header{"X-Forwarded-For": {randomIP()}}}); a.status != http.StatusUnauthorized {
			t.Fatalf("bogus key from a fresh address: status %d: %s", a.status, a.body)
		}
	}

	// The real key has its whole budget, and no more.
	owner := http.Header{"X-Forwarded-For": {randomIP()}}
	for i := range burst {
		a := do(t, r, call{path: "/api/v1/users/me", auth: "ApiKey " + key, header: owner})
		mustEcho(t, a, "eu-west")
		if a.header.Get("X-Meridian-Key-Verified") != "" {
			t.Fatalf("request %d: the node's verified-key mark reached the client", i)
		}
	}
	a := do(t, r, call{path: "/api/v1/users/me", auth: "ApiKey " + key, header: http.Header{"X-Forwarded-For": {randomIP()}}})
	if a.status != http.StatusTooManyRequests {
		t.Fatalf("request %d with the real key: status %d, want 429 (its budget is %d)", burst+1, a.status, burst)
	}
	assertLimitedBy(t, a, burst)
	// A bogus secret is still the node's to refuse, not the exhausted key's 429.
	if a := do(t, r, call{path: "/api/v1/users/me", auth: bogus, header: http.Header{"X-Forwarded-For": {randomIP()}}}); a.status != http.StatusUnauthorized {
		t.Fatalf("bogus key after the real key's budget ran out: status %d: %s", a.status, a.body)
	}
}

func assertLimitedBy(t *testing.T, a answer, limit int) {
	t.Helper()
	if a.errorCode(t) != "rate_limited" || a.header.Get("Retry-After") == "" || a.header.Get("RateLimit-Limit") != fmt.Sprint(limit) {
		t.Errorf("refusal without the contract's headers (limit %d): %v %s", limit, a.header, a.body)
	}
}
