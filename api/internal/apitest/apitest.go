// Package apitest runs real API nodes for integration tests: six shard databases on the test
// PostgreSQL with every migration applied, the example three-region topology pointing at them, the test
// Redis, real Ed25519 token keys, and one HTTP server per region mounting the routes under test with the
// production handler assembly. Users can be created straight in their home shard, with a real access
// token, so a feature's tests do not depend on the registration endpoint. Shards, topology and keys
// come from deploy/local/fixture, which the other node harnesses share.
//
// The nodes serve mutual TLS, as production nodes do: each has a certificate of its region from the
// harness's private CA, requests go with an edge router's certificate (Request.AsNode sends one with
// a node's instead, for internal routes), and calls between the nodes present the caller's.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/middleware"
	"github.com/8thdegree/meridian/api/internal/peers"
	"github.com/8thdegree/meridian/api/internal/server"
	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/mtls/mtlstest"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Regions of the example topology.
var Regions = []string{"us-east", "eu-west", "ap-south"}

// Issuer and Audience of test tokens (the fixture's).
const (
	Issuer   = fixture.Issuer
	Audience = fixture.Audience
)

// Options say what the nodes serve.
type Options struct {
	// Routes returns the routes of one region's node.
	Routes func(a *feature.Deps, tokens *tokenissue.Issuer) []feature.Route
	// APIKeys, if set, verifies API keys for one region's node.
	APIKeys func(a *feature.Deps) authn.APIKeyVerifier
	// Middleware, if set, returns extra middleware for one region's node.
	Middleware func(a *feature.Deps) []middleware.Middleware
	// RouteMiddleware, if set, returns one region's route middleware (server.Options.RouteMiddleware).
	RouteMiddleware func(a *feature.Deps) []middleware.Middleware
	// Now replaces the clock of every node.
	Now func() time.Time
	// Revoked, if set, returns one region's check for ended sessions (HeaderAuthenticator.Revoked).
	Revoked func(a *feature.Deps) func(shardkey.ID) bool
}

// Node is one region's API node.
type Node struct {
	Region string
	App    *feature.Deps
	Server *httptest.Server
}

// Harness is a running three-region test deployment.
type Harness struct {
	T        *testing.T
	Topology *topology.Topology
	Pools    *shardpool.Manager
	Tokens   *tokenissue.Issuer
	Redis    *redis.Client
	Nodes    map[string]*Node
	IDs      *shardkey.Generator
	// PKI is the CA of the nodes' and clients' certificates.
	PKI *mtlstest.PKI
	seq atomic.Int64

	clientMu sync.Mutex
	clients  map[mtls.Identity]*http.Client
}

// New starts the harness; everything stops in t.Cleanup.
func New(t *testing.T, opts Options) *Harness {
	t.Helper()
	ctx := context.Background()
	fx := fixture.New(t, fixture.Options{Shards: true, MaxConns: 8})
	topo := fx.Topology
	pools, err := shardpool.New(shardpool.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pools.Close)
	if err := pools.Apply(ctx, topo); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	tokens := fx.Tokens(t, tokenissue.Config{TTL: 15 * time.Minute}, now)
	verifier := fx.Verifier(t, accesstoken.Config{Leeway: 5 * time.Second}, now)
	h := &Harness{T: t, Topology: topo, Pools: pools, Tokens: tokens, Redis: rdb, Nodes: map[string]*Node{}, IDs: shardkey.NewGenerator(now, nil),
		PKI: mtlstest.New(t), clients: map[mtls.Identity]*http.Client{}}
	for _, region := range Regions {
		a := &feature.Deps{Region: region, Pools: pools, Redis: rdb, IDs: h.IDs, Log: testLogger(t), Now: now, FreezeWait: 2 * time.Second}
		a.Peers = &testPeers{h: h, from: region}
		var routes []feature.Route
		if opts.Routes != nil {
			routes = opts.Routes(a, tokens)
		}
		auth := &authn.HeaderAuthenticator{Verifier: verifier}
		if opts.APIKeys != nil {
			auth.APIKeys = opts.APIKeys(a)
		}
		if opts.Revoked != nil {
			auth.Revoked = opts.Revoked(a)
		}
		so := server.Options{Region: region, Log: a.Log, Auth: auth}
		if opts.Middleware != nil {
			so.Middleware = opts.Middleware(a)
		}
		if opts.RouteMiddleware != nil {
			so.RouteMiddleware = opts.RouteMiddleware(a)
		}
		handler, err := server.Handler(routes, so)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(handler)
		srv.TLS = h.PKI.Source(t, NodeIdentity(region)).ServerConfig(mtls.AnyIdentity)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		h.Nodes[region] = &Node{Region: region, App: a, Server: srv}
	}
	// The clients are made now, not by a node's handler on a goroutine of its own.
	for _, region := range Regions {
		h.Client(t, NodeIdentity(region))
		h.Client(t, mtls.Router(region))
	}
	return h
}

// User is a user created by the harness.
type User struct {
	ID     shardkey.ID
	KSID   shardkey.KeyspaceID
	Email  string
	Name   string
	Role   authn.Role
	Region string
	Token  string
	// Verified: the user's email is verified (CreateUser's users are; CreateUnverifiedUser's are not).
	Verified bool
}

// CreateUser inserts a user with a verified email straight into its home shard and mints an access
// token for it.
func (h *Harness) CreateUser(t *testing.T, role authn.Role, region string) User {
	t.Helper()
	return h.createUser(t, role, region, true)
}

// CreateUnverifiedUser is CreateUser for a user who has not verified their email.
func (h *Harness) CreateUnverifiedUser(t *testing.T, role authn.Role, region string) User {
	t.Helper()
	return h.createUser(t, role, region, false)
}

func (h *Harness) createUser(t *testing.T, role authn.Role, region string, verified bool) User {
	t.Helper()
	r, ok := h.Topology.Region(region)
	if !ok {
		t.Fatalf("unknown region %s", region)
	}
	n := h.seq.Add(1)
	email := fmt.Sprintf("user%d-%d@example.test", n, time.Now().UnixNano())
	k := shardkey.NewKeyspaceID(r.Code, []byte(email))
	id, err := h.IDs.New(shardkey.KindUser, k)
	if err != nil {
		t.Fatal(err)
	}
	routed, err := h.Pools.Route(k)
	if err != nil {
		t.Fatal(err)
	}
	u := User{ID: id, KSID: k, Email: email, Name: fmt.Sprintf("Test User %d", n), Role: role, Region: region, Verified: verified}
	if _, err := routed.Pool.Exec(context.Background(),
		`INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region, email_verified_at)
		 VALUES ($1, $2, $3, $3, $4, $5, $6, CASE WHEN $7::bool THEN now() END)`,
		k.Bytes(), id.Bytes(), email, u.Name, string(role), region, verified); err != nil {
		t.Fatal(err)
	}
	u.Token = h.TokenFor(t, u)
	return u
}

// TokenFor mints an access token for u.
func (h *Harness) TokenFor(t *testing.T, u User) string {
	t.Helper()
	tok, _, err := h.Tokens.Issue(accesstoken.Subject{UserID: u.ID, KSID: u.KSID, Role: string(u.Role), Region: u.Region, EmailVerified: u.Verified})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Response is a recorded answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test if it is not JSON.
func (r *Response) JSON(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v\n%s", r.Status, err, r.Body)
	}
}

// Map decodes the body as a JSON object.
func (r *Response) Map(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// ErrorCode returns error.code of an error response ("" if none).
func (r *Response) ErrorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Request describes a call.
type Request struct {
	Method string
	Path   string
	// Token is sent as a bearer token; Auth, when set, is the whole Authorization header instead.
	Token  string
	Auth   string
	Body   any // encoded as JSON unless it is a string or []byte (sent raw)
	Header http.Header
	// AsNode, when set, sends the request with the certificate of that region's node (internal routes
	// accept nodes only); otherwise it goes with the certificate of the edge router of the region the
	// request is sent to.
	AsNode string
}

// Browser is a client that reaches the nodes as a browser does through an edge router (with the
// router's certificate) and shows each redirect instead of following it.
func (h *Harness) Browser(t testing.TB) *http.Client {
	t.Helper()
	c := *h.Client(t, mtls.Router(Regions[0]))
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// NodeIdentity is the identity of the harness's node of region.
func NodeIdentity(region string) mtls.Identity { return mtls.Node(region, region+"-1") }

// Client returns an HTTP client that presents the certificate of id and accepts the harness's nodes.
func (h *Harness) Client(t testing.TB, id mtls.Identity) *http.Client {
	t.Helper()
	h.clientMu.Lock()
	defer h.clientMu.Unlock()
	if c, ok := h.clients[id]; ok {
		return c
	}
	tr := &http.Transport{TLSClientConfig: h.PKI.Source(t, id).ClientConfig(mtls.NodesOnly), MaxIdleConnsPerHost: 16}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	h.clients[id] = c
	return c
}

// Do sends req to the node of region.
func (h *Harness) Do(t *testing.T, region string, req Request) *Response {
	t.Helper()
	node, ok := h.Nodes[region]
	if !ok {
		t.Fatalf("no node for region %s", region)
	}
	var body io.Reader
	switch b := req.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(data)
	}
	hr, err := http.NewRequest(req.Method, node.Server.URL+req.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+req.Token)
	}
	if req.Auth != "" {
		hr.Header.Set("Authorization", req.Auth)
	}
	for k, vs := range req.Header {
		hr.Header[k] = vs
	}
	id := mtls.Router(region)
	if req.AsNode != "" {
		id = NodeIdentity(req.AsNode)
	}
	resp, err := h.Client(t, id).Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// testPeers lets test nodes call each other in-process over HTTP, as production nodes do through Consul.
type testPeers struct {
	h    *Harness
	from string
}

var _ feature.Peers = (*testPeers)(nil)

func (p *testPeers) Call(ctx context.Context, region, method, path string, body, out any) error {
	node, ok := p.h.Nodes[region]
	if !ok {
		return fmt.Errorf("apitest: no node for region %s", region)
	}
	return peers.Call(ctx, p.h.Client(p.h.T, NodeIdentity(p.from)), node.Server.URL, method, path, body, out)
}

// testLogger sends node logs to the test log, shown only when a test fails.
// Logging stops when the test ends: a straggling goroutine must not log into a finished test.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
