package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/middleware"
	"github.com/8thdegree/meridian/api/internal/openapi/openapitest"
	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// update rewrites the golden files under testdata/: go test ./api -run OpenAPI -update.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the tests produce")

// golden compares got with testdata/name, or rewrites the file under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	// The document is long: name the first line that differs.
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	line := func(l []string) string {
		if i < len(l) {
			return l[i]
		}
		return "(end of file)"
	}
	t.Errorf("%s differs from what the test produced, first at line %d:\n got: %s\nwant: %s\nIf the change is meant, rerun with -update and review the diff.", path, i+1, line(g), line(w))
}

// fullNodes runs the three regional nodes of the harness with every feature and middleware, as cmd/api
// assembles them.
func fullNodes(t *testing.T) (*apitest.Harness, map[string]*assembly) {
	t.Helper()
	h, asms, _ := fullNodesWithMail(t)
	return h, asms
}

// fullNodesWithMail is fullNodes, and the folder every node writes its mail to.
func fullNodesWithMail(t *testing.T) (*apitest.Harness, map[string]*assembly, string) {
	t.Helper()
	mailDir := t.TempDir()
	asms := map[string]*assembly{}
	lims := map[string]*ratelimit.Limiter{}
	h := apitest.New(t, apitest.Options{
		Routes: func(a *feature.Deps, tokens *tokenissue.Issuer) []feature.Route {
			lims[a.Region] = ratelimit.New(a.Redis, a.Log)
			cfg := DefaultConfig()
			cfg.EmailPepper, cfg.StateKey, cfg.RefreshTTL, cfg.PublicURL = "test-pepper-0123456789", "test-state-key-0123456789", time.Hour, "http://meridian.test"
			cfg.MailDir = mailDir
			asm, err := assemble(a, featureSettings{cfg: cfg, tokens: tokens, limiter: lims[a.Region]})
			if err != nil {
				t.Fatal(err)
			}
			asms[a.Region] = asm
			return asm.routes
		},
		APIKeys: func(a *feature.Deps) authn.APIKeyVerifier { return asms[a.Region].accounts },
		Middleware: func(a *feature.Deps) []middleware.Middleware {
			global, _, err := middlewares(prometheus.NewRegistry(), lims[a.Region], middleware.NewTracing(nil, nil), nil, nil, ratelimit.Limit{}, ratelimit.Limit{})
			if err != nil {
				t.Fatal(err)
			}
			return global
		},
		RouteMiddleware: func(a *feature.Deps) []middleware.Middleware {
			_, route, err := middlewares(prometheus.NewRegistry(), lims[a.Region], middleware.NewTracing(nil, nil), nil, nil, ratelimit.Limit{}, ratelimit.Limit{})
			if err != nil {
				t.Fatal(err)
			}
			return route
		},
	})
	return h, asms, mailDir
}

// verifiedSession follows the verification link mailed to email at registration and returns the
// access token of the session refreshed after it (it carries email_verified).
func verifiedSession(t *testing.T, h *apitest.Harness, mailDir, region, email, refresh string) string {
	t.Helper()
	if r := h.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/verify-email", Body: map[string]any{"token": verificationToken(t, mailDir, email)}}); r.Status != http.StatusNoContent {
		t.Fatalf("verify %s: %d %s", email, r.Status, r.Body)
	}
	r := h.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]any{"refresh_token": refresh}})
	var b struct {
		AccessToken string `json:"access_token"`
	}
	r.JSON(t, &b)
	if r.Status != http.StatusOK || b.AccessToken == "" {
		t.Fatalf("refresh after verifying %s: %d %s", email, r.Status, r.Body)
	}
	return b.AccessToken
}

// verificationToken reads the newest verification link mailed to addr from the mail folder.
func verificationToken(t *testing.T, dir, addr string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`token=(mev_[A-Za-z0-9_.-]+)`)
	tok := ""
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if m := re.FindSubmatch(raw); m != nil && bytes.Contains(raw, []byte("To: <"+addr+">")) {
			tok = string(m[1])
		}
	}
	if tok == "" {
		t.Fatalf("no verification mail to %s in %s", addr, dir)
	}
	return tok
}

// The OpenAPI document served by a node lists exactly the routes the node serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h, asms := fullNodes(t)
	r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/openapi.json"})
	if r.Status != 200 {
		t.Fatalf("openapi.json: %d", r.Status)
	}
	openapitest.Check(t, r.Body, asms["us-east"].routes)
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	r.JSON(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") || len(doc.Paths) < 20 {
		t.Fatalf("openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	// The whole document, indented so that a change reads as a diff of the API.
	var indented bytes.Buffer
	if err := json.Indent(&indented, r.Body, "", "  "); err != nil {
		t.Fatal(err)
	}
	indented.WriteByte('\n')
	golden(t, "openapi.json", indented.Bytes())
}

// The README's walkthrough, through the assembled nodes: a user registers in eu-west, logs in through
// us-east, sets a profile; a client in us-east posts a job; the freelancer finds it and is reviewed.
func TestWalkthrough(t *testing.T) {
	h, _, mailDir := fullNodesWithMail(t)
	do := func(region, method, path, token string, body any) map[string]any {
		t.Helper()
		r := h.Do(t, region, apitest.Request{Method: method, Path: path, Token: token, Body: body})
		if r.Status/100 != 2 {
			t.Fatalf("%s %s in %s: %d %s", method, path, region, r.Status, r.Body)
		}
		if r.Status == http.StatusNoContent || len(r.Body) == 0 {
			return nil
		}
		return r.Map(t)
	}
	reg := do("eu-west", "POST", "/api/v1/auth/register", "", map[string]any{"email": "Bruno@Example.test", "password": "a long enough password", "name": "Bruno", "role": "freelancer", "region": "eu-west"})
	if reg["user"].(map[string]any)["region"] != "eu-west" {
		t.Fatalf("register: %v", reg)
	}
	// The same email in another region is taken.
	if r := h.Do(t, "ap-south", apitest.Request{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]any{"email": "bruno@example.test", "password": "another long password", "name": "B", "role": "client", "region": "ap-south"}}); r.Status != 409 || r.ErrorCode() != "email_taken" {
		t.Fatalf("duplicate email in another region: %d %s", r.Status, r.Body)
	}
	login := do("us-east", "POST", "/api/v1/auth/login", "", map[string]any{"email": "bruno@example.test", "password": "a long enough password"})
	bruno := login["access_token"].(string)
	me := do("eu-west", "GET", "/api/v1/users/me", bruno, nil)
	brunoID := me["id"].(string)
	do("eu-west", "PUT", "/api/v1/users/profile", bruno, map[string]any{"headline": "Go engineer", "bio": "<b>Databases</b><script>x</script>", "skills": []string{"Go", "PostgreSQL"}, "hourly_rate": 80, "country": "PT", "available": true})

	alice := do("us-east", "POST", "/api/v1/auth/register", "", map[string]any{"email": "alice@example.test", "password": "alice's long password", "name": "Alice", "role": "client"})
	// Alice verifies her email (the link mailed at registration), and refreshes her session to carry it:
	// an unverified client may not post jobs or reviews.
	if r := h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: alice["access_token"].(string), Body: map[string]any{"title": "x"}}); r.Status != http.StatusForbidden || r.ErrorCode() != "email_unverified" {
		t.Fatalf("job by an unverified client: %d %s", r.Status, r.Body)
	}
	do("us-east", "POST", "/api/v1/auth/verify-email", "", map[string]any{"token": verificationToken(t, mailDir, "alice@example.test")})
	alice = do("us-east", "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": alice["refresh_token"]})
	aliceTok := alice["access_token"].(string)
	job := do("us-east", "POST", "/api/v1/jobs/", aliceTok, map[string]any{"title": "Sharded PostgreSQL expert", "description": "Help us shard", "skills": []string{"go", "postgresql"}, "budget_min": 1000, "budget_max": 5000, "currency": "USD", "remote": true})
	jobID := job["id"].(string)
	found := do("eu-west", "GET", "/api/v1/jobs/search?q=postgresql&scope=global", "", nil)
	if items := found["items"].([]any); len(items) == 0 || !strings.Contains(string(mustJSON(t, items)), jobID) || found["partial"] != false {
		t.Fatalf("global search from eu-west: %v", found)
	}
	// Alice hired Bruno for the job, and the contract is completed: written straight into their shards.
	contractID := completedContract(t, h, jobID, job["owner_id"].(string), brunoID)
	// Alice reviews Bruno: her home region (us-east) answers; the review lives in Bruno's (eu-west).
	r := h.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/reviews/", Token: aliceTok, Body: map[string]any{"contract_id": contractID, "rating": 5, "comment": "Great"}})
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "us-east" {
		t.Fatalf("review sent outside the reviewer's region: %d %s", r.Status, r.Body)
	}
	do("us-east", "POST", "/api/v1/reviews/", aliceTok, map[string]any{"contract_id": contractID, "rating": 5, "comment": "Great"})
	stats := do("eu-west", "GET", "/api/v1/reviews/stats?user_id="+brunoID, "", nil)
	if stats["count"].(float64) != 1 || stats["average"].(float64) != 5 {
		t.Fatalf("stats: %v", stats)
	}
	pub := do("eu-west", "GET", "/api/v1/users/"+brunoID+"/profile", "", nil)
	if strings.Contains(string(mustJSON(t, pub)), "example.test") || strings.Contains(string(mustJSON(t, pub)), "<script") {
		t.Fatalf("public profile leaks the email or unsafe markup: %v", pub)
	}
	// The /api alias behaves identically.
	if got := do("eu-west", "GET", "/api/users/me", bruno, nil); got["id"] != brunoID {
		t.Fatalf("/api alias: %v", got)
	}
}

// completedContract writes a completed contract of the job's owner and a freelancer as the hiring
// feature keeps it: the contract on the client's shard, its reference row on the freelancer's.
func completedContract(t *testing.T, h *apitest.Harness, job, client, freelancer string) string {
	t.Helper()
	ids := map[string]shardkey.ID{}
	for name, s := range map[string]string{"job": job, "client": client, "freelancer": freelancer} {
		id, err := shardkey.ParseID(s)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	c, f := ids["client"].KeyspaceID(), ids["freelancer"].KeyspaceID()
	contract, err := h.IDs.New(shardkey.KindContract, c)
	if err != nil {
		t.Fatal(err)
	}
	proposal, err := h.IDs.New(shardkey.KindProposal, f)
	if err != nil {
		t.Fatal(err)
	}
	for k, sql := range map[shardkey.KeyspaceID]string{
		c: `INSERT INTO core.contracts (ksid, id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status, completed_at)
			VALUES ($1, $2, $3, $4, $5, $6, 80, 'USD', 'completed', now())`,
		f: `INSERT INTO core.contract_refs (ksid, contract_id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status, started_at, completed_at)
			VALUES ($1, $2, $3, $4, $5, $6, 80, 'USD', 'completed', now(), now())`,
	} {
		rt, err := h.Pools.Route(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.Pool.Exec(context.Background(), sql, k.Bytes(), contract.Bytes(), ids["job"].Bytes(), proposal.Bytes(),
			ids["client"].Bytes(), ids["freelancer"].Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	return contract.String()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A real node process (as cmd/api runs it): it takes its topology from Consul, serves, registers in
// Consul with a passing check, and leaves the catalog when stopped.
func TestNodeRun(t *testing.T) {
	ctx := context.Background()
	// Shards, the topology in Consul (with API service names of the test's own, so this test's node is
	// the only one in the catalog) and a signing key.
	fx := fixture.New(t, fixture.Options{Shards: true, Consul: true})
	topo, cc, key, keyDir := fx.Topology, fx.Consul, fx.Key, fx.KeyDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in OpenTelemetry collector: counts the OTLP/HTTP trace exports it receives.
	var exports atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			exports.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	for k, v := range map[string]string{
		"MERIDIAN_REGION": "ap-south", "CONSUL_HTTP_ADDR": fx.ConsulAddr, "CONSUL_HTTP_TOKEN_FILE": fx.ConsulAgent.TokenFile(local.RoleNode), "MERIDIAN_TOPOLOGY_KEY": key,
		"MERIDIAN_TOPOLOGY_CACHE": filepath.Join(t.TempDir(), "topology.json"), "MERIDIAN_SIGNING_KEY_DIR": keyDir,
		"MERIDIAN_EMAIL_PEPPER": "pepper-0123456789abc", "MERIDIAN_MAIL_DIR": t.TempDir(),
		"MERIDIAN_OAUTH_STATE_KEY": "state-key-0123456789", "MERIDIAN_LISTEN": ln.Addr().String(),
		"MERIDIAN_OTLP_ENDPOINT": collector.URL, "MERIDIAN_TRACE_SAMPLE_RATIO": "1",
	} {
		t.Setenv(k, v)
	}
	tlsEnv(t, fx, mtls.Node("ap-south", "ap-south-1"))
	ops, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	node, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- node.ServeListeners(runCtx, ln, ops) }()
	// The operations endpoints answer plain HTTP on their own listener, where Consul's check goes; the
	// API answers mutual TLS only.
	base, apiURL := "http://"+ops.Addr().String(), "https://"+ln.Addr().String()
	service := topo.Regions[2].APIService
	var passing int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && passing == 0; time.Sleep(100 * time.Millisecond) {
		entries, _, err := cc.Health().Service(service, "", true, nil)
		if err == nil {
			passing = len(entries)
		}
	}
	if passing != 1 {
		t.Fatalf("the node is not passing in Consul under %s", service)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	var ready map[string]any
	err = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	if ready["redis"] != "ok" || ready["status"] != "ready" {
		t.Fatalf("readyz: %v", ready)
	}
	resp, err = routerClient(t, fx).Get(apiURL + "/api/v1/auth/jwks.json")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("jwks: %v %v", resp, err)
	}
	resp.Body.Close()
	// No router is configured (MERIDIAN_TRUSTED_PROXIES unset), so a local process that forges
	// X-Forwarded-For is still recorded as itself: the registration's audit event names loopback.
	// An email whose directory is this node's region: the test runs no node of the others.
	var email string
	for i := 0; email == ""; i++ {
		e := fmt.Sprintf("forged-xff-%d@example.test", i)
		if r, _, err := directory.Locate(topo, directory.HashEmail([]byte(cfg.EmailPepper), e)); err == nil && r.Name == cfg.Region {
			email = e
		}
	}
	body := strings.NewReader(`{"email":"` + email + `","password":"a long enough password","name":"Xff","role":"client"}`)
	req, _ := http.NewRequest(http.MethodPost, apiURL+"/api/v1/auth/register", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	resp, err = routerClient(t, fx).Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %v %v", resp, err)
	}
	resp.Body.Close()
	var ips []string
	for _, dsn := range fx.DSN {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, `SELECT host(ip) FROM core.audit_log WHERE action = 'auth.register'`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ips = append(ips, got...)
	}
	if !slices.Equal(ips, []string{"127.0.0.1"}) {
		t.Errorf("registration audited from %v, want only 127.0.0.1 (the forged X-Forwarded-For was believed)", ips)
	}
	// Without a client certificate (or without TLS) the node serves nothing.
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the server is what is tested
	if resp, err := noCert.Get(apiURL + "/api/v1/auth/jwks.json"); err == nil {
		resp.Body.Close()
		t.Fatalf("the API answered a client without a certificate: %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + ln.Addr().String() + "/api/v1/auth/jwks.json"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the API answered plain HTTP")
		}
	}
	if resp, err := http.Get(base + "/api/v1/auth/jwks.json"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("the operations listener serves the API: %d", resp.StatusCode)
		}
	}
	// The node's certificate is renewed on disk (another node ID, so the change shows): new
	// connections are served with it, without a restart.
	tf := fx.PKI.Dir.Files("node-ap-south-ap-south-1")
	if err := fx.PKI.CA.IssueFiles(mtls.Node("ap-south", "ap-south-renewed"), time.Hour, tf.Cert, tf.Key); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	for _, p := range []string{tf.Cert, tf.Key} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	fresh := routerClient(t, fx)
	fresh.Transport.(*http.Transport).DisableKeepAlives = true
	var served mtls.Identity
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := fresh.Get(apiURL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if served, err = mtls.IdentityOf(resp.TLS.PeerCertificates[0]); err == nil && served.ID == "ap-south-renewed" {
			break
		}
	}
	if served.ID != "ap-south-renewed" {
		t.Fatalf("after the renewal the node still presents %v", served)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %v %v", resp, err)
	}
	resp.Body.Close()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// Spans of the requests above were exported at shutdown at the latest.
	if exports.Load() == 0 {
		t.Error("no trace reached the OTLP endpoint")
	}
	if entries, _, _ := cc.Health().Service(service, "", false, nil); len(entries) != 0 {
		t.Fatalf("the node is still in the catalog after it stopped")
	}
	if _, err := os.Stat(cfg.TopologyCache); err != nil {
		t.Fatalf("no disk copy of the topology: %v", err)
	}
}

// Every scope an API key can carry is checked on its routes: matching:read on /jobs/matching (not
// jobs:read), reviews:read on the review reads, which stay open to callers without credentials.
func TestAPIKeyScopesAreChecked(t *testing.T) {
	h, _, mailDir := fullNodesWithMail(t)
	reg := h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]any{"email": "scopes@example.test", "password": "a long enough password", "name": "Sco", "role": "freelancer"}})
	if reg.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", reg.Status, reg.Body)
	}
	var b struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		User         struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	reg.JSON(t, &b)
	b.AccessToken = verifiedSession(t, h, mailDir, "us-east", "scopes@example.test", b.RefreshToken)
	key := func(scopes ...string) http.Header {
		t.Helper()
		r := h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/api-keys", Token: b.AccessToken,
			Body: map[string]any{"name": strings.Join(scopes, "+"), "scopes": scopes}})
		if r.Status != http.StatusCreated {
			t.Fatalf("create key %v: %d %s", scopes, r.Status, r.Body)
		}
		var k struct{ Key string }
		r.JSON(t, &k)
		return http.Header{"Authorization": {"ApiKey " + k.Key}}
	}
	everything := key("profile:read", "profile:write", "jobs:read", "jobs:write", "reviews:write")
	for _, tc := range []struct {
		path   string
		scope  string
		others http.Header // a key with every scope but this one
	}{
		{"/api/v1/jobs/matching", "matching:read", everything},
		{"/api/v1/reviews/?user_id=" + b.User.ID, "reviews:read", everything},
		{"/api/v1/reviews/stats?user_id=" + b.User.ID, "reviews:read", everything},
	} {
		if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: tc.path, Header: tc.others}); r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), tc.scope) {
			t.Errorf("%s with a key without %s: %d %s", tc.path, tc.scope, r.Status, r.Body)
		}
		if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: tc.path, Header: key(tc.scope)}); r.Status != http.StatusOK {
			t.Errorf("%s with a key with %s: %d %s", tc.path, tc.scope, r.Status, r.Body)
		}
		if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: tc.path, Token: b.AccessToken}); r.Status != http.StatusOK {
			t.Errorf("%s with an access token: %d %s", tc.path, r.Status, r.Body)
		}
	}
	// Reviews stay public: no credentials at all is fine, a bad key is not.
	if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/reviews/?user_id=" + b.User.ID}); r.Status != http.StatusOK {
		t.Errorf("reviews without credentials: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/reviews/?user_id=" + b.User.ID,
		Header: http.Header{"Authorization": {"ApiKey mk_bogus"}}}); r.Status != http.StatusUnauthorized {
		t.Errorf("reviews with a bad key: %d %s", r.Status, r.Body)
	}
}

// Plain-text fields take no markup (400 naming the field, nothing stored); rich text keeps no images.
func TestPlainTextFieldsRefuseMarkup(t *testing.T) {
	h, _, mailDir := fullNodesWithMail(t)
	const xss = `<img src=x onerror=alert(1)>`
	bad := func(r *apitest.Response, field, what string) {
		t.Helper()
		var e struct {
			Error struct {
				Code   string            `json:"code"`
				Fields map[string]string `json:"fields"`
			} `json:"error"`
		}
		r.JSON(t, &e)
		if r.Status != http.StatusBadRequest || e.Error.Code != "invalid_request" || !strings.Contains(e.Error.Fields[field], "plain text") {
			t.Errorf("%s: %d %s, want 400 naming %s", what, r.Status, r.Body, field)
		}
	}
	bad(h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]any{"email": "markup@example.test", "password": "a long enough password", "name": "Eve" + xss, "role": "client"}}), "name", "register")
	reg := h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]any{"email": "markup@example.test", "password": "a long enough password", "name": "Eve", "role": "client"}})
	if reg.Status != http.StatusCreated {
		t.Fatalf("register: %d %s", reg.Status, reg.Body)
	}
	var b struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	reg.JSON(t, &b)
	tok := verifiedSession(t, h, mailDir, "us-east", "markup@example.test", b.RefreshToken)
	profile := map[string]any{"headline": "Go engineer", "bio": "ok", "skills": []string{"go"}, "hourly_rate": 80, "country": "PT", "available": true}
	with := func(m map[string]any, k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range m {
			c[kk] = vv
		}
		c[k] = v
		return c
	}
	bad(h.Do(t, "us-east", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: tok, Body: with(profile, "headline", "Hi "+xss)}), "headline", "profile headline")
	bad(h.Do(t, "us-east", apitest.Request{Method: "PUT", Path: "/api/v1/users/profile", Token: tok, Body: with(profile, "skills", []string{"go", "<b>sql</b>"})}), "skills.1", "profile skill")
	job := map[string]any{"title": "Shard it", "description": "Help", "skills": []string{"go"}, "budget_min": 1000, "budget_max": 5000, "currency": "USD", "remote": true}
	bad(h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: tok, Body: with(job, "title", xss+"Shard it")}), "title", "job title")
	bad(h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: tok, Body: with(job, "skills", []string{xss})}), "skills.0", "job skill")
	// Nothing was stored by the refusals; text that merely looks odd is plain text.
	if r := h.Do(t, "us-east", apitest.Request{Method: "GET", Path: "/api/v1/jobs/", Token: tok}); r.Status != 200 || strings.Contains(string(r.Body), "Shard it") {
		t.Errorf("jobs after refusals: %d %s", r.Status, r.Body)
	}
	r := h.Do(t, "us-east", apitest.Request{Method: "POST", Path: "/api/v1/jobs/", Token: tok,
		Body: with(with(job, "title", "C++ < Rust & <3"), "description", `<p>Logo: <img src="https://tracker.example/p.png"></p>`)})
	if r.Status != http.StatusCreated {
		t.Fatalf("job with plain title: %d %s", r.Status, r.Body)
	}
	got := r.Map(t)
	if got["title"] != "C++ < Rust & <3" || strings.Contains(got["description"].(string), "img") || strings.Contains(got["description"].(string), "tracker") {
		t.Errorf("stored job: %v", got)
	}
}
