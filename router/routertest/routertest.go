// Package routertest runs edge routers against stand-in API nodes for integration tests and
// benchmarks: a topology of three regions in the test Consul (under a key and service names of the
// test's own), stand-in nodes registered in Consul as the regions' API services with TTL checks the
// test can fail, real Ed25519 access tokens whose JWKS the stand-ins publish, and routers started on
// loopback with the test Redis. The topology, the Consul names and the keys come from
// deploy/local/fixture, which the other node harnesses share.
//
// A stand-in node echoes what it received (method, path, query, headers, body) and says which node and
// region it is. Given a topology of its own (SetTable), it answers 421 wrong_region with a replay hint
// for data it does not hold, as a real node does, so a router with an older topology can be tested.
//
// Stand-in nodes serve mutual TLS with node certificates of the fixture's CA, and routers call them
// with a router certificate, as in production (Options.Plaintext serves and calls plain HTTP instead,
// for benchmarks that measure what TLS costs).
//
// The package needs the real servers of deploy/local/testenv: call it from tests whose TestMain is
// testenv.Main.
package routertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/mtls/mtlstest"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/router"
	"github.com/8thdegree/meridian/router/internal/credential"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Issuer and Audience of the test tokens (the fixture's).
const (
	Issuer   = fixture.Issuer
	Audience = fixture.Audience
)

// Regions of the test topology (topology.Example's).
var Regions = []string{"us-east", "eu-west", "ap-south"}

// Options say what New builds.
type Options struct {
	// NodesPerRegion stand-in nodes are started per region (default 2; -1 for none).
	NodesPerRegion int
	// Handler, if set, replaces the stand-in nodes' echo handler (the JWKS is still served).
	Handler func(n *Node) http.Handler
	// Plaintext runs the stand-ins on plain HTTP and the routers with PlaintextUpstream.
	Plaintext bool
}

// Env is one test's world: Consul, Redis, topology, keys and nodes.
type Env struct {
	// Consul is a client of the test Consul as the API nodes (local.RoleNode): the stand-in nodes
	// register with it. Routers get the router role's token (DefaultRouterConfig).
	Consul      *consul.Client
	ConsulAgent *local.Consul
	ConsulAddr  string
	RedisAddr   string
	// Key is the Consul KV key of the topology.
	Key string
	// Prefix makes the test's Consul names unique.
	Prefix string
	Keys   *tokenissue.SigningKeys
	Tokens *tokenissue.Issuer
	IDs    *shardkey.Generator
	// PKI is the CA of the routers' and stand-ins' certificates.
	PKI *mtlstest.PKI

	opts      Options
	routerTLS map[string]mtls.Files
	store     *topostore.Store
	// verifier checks tokens for the fake nodes, as a node's own verifier does.
	verifier *accesstoken.Verifier
	jwks     atomic.Pointer[[]byte]

	mu    sync.Mutex
	topo  *topology.Topology
	nodes map[string][]*Node
	seq   int
}

// New builds an Env and starts its nodes.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.NodesPerRegion == 0 {
		opts.NodesPerRegion = 2
	}
	fx := fixture.New(t, fixture.Options{Consul: true})
	e := &Env{
		Consul: testenv.ConsulClient(t, fx.ConsulAgent, local.RoleNode), ConsulAgent: fx.ConsulAgent, ConsulAddr: fx.ConsulAddr, RedisAddr: fx.RedisAddr,
		Key: fx.Key, Prefix: fx.Prefix,
		Keys: fx.Keys, Tokens: fx.Tokens(t, tokenissue.Config{TTL: time.Hour}, nil), IDs: shardkey.NewGenerator(nil, nil), PKI: fx.PKI,
		verifier: fx.Verifier(t, accesstoken.Config{}, nil),
		opts:     opts, store: fx.Store, topo: fx.Topology, nodes: map[string][]*Node{},
	}
	e.SetJWKS(fx.Keys.JWKS())
	e.routerTLS = map[string]mtls.Files{}
	for _, r := range Regions {
		e.routerTLS[r] = e.PKI.Files(t, mtls.Router(r))
	}
	if opts.NodesPerRegion > 0 {
		for _, r := range Regions {
			for range opts.NodesPerRegion {
				e.StartNode(t, r)
			}
		}
	}
	return e
}

// Topology returns the topology in Consul.
func (e *Env) Topology() *topology.Topology {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.topo.Clone()
}

// Modify changes the topology in Consul (the version is bumped).
func (e *Env) Modify(t testing.TB, fn func(*topology.Topology) error) *topology.Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topo, err := e.store.Modify(ctx, fn)
	if err != nil {
		t.Fatalf("routertest: modifying the topology: %v", err)
	}
	e.mu.Lock()
	e.topo = topo
	e.mu.Unlock()
	return topo.Clone()
}

// SetJWKS changes the key set the nodes publish (a rotation).
func (e *Env) SetJWKS(b []byte) { e.jwks.Store(&b) }

// RegionCode returns a region's keyspace code.
func (e *Env) RegionCode(t testing.TB, region string) shardkey.Region {
	t.Helper()
	r, ok := e.Topology().Region(region)
	if !ok {
		t.Fatalf("routertest: no region %q", region)
	}
	return r.Code
}

// User is a user homed in a region, with an access token.
type User struct {
	ID     shardkey.ID
	KSID   shardkey.KeyspaceID
	Region string
	Token  string
}

// User makes a user of region (no database: the router only needs the token).
func (e *Env) User(t testing.TB, region string) User {
	t.Helper()
	e.mu.Lock()
	e.seq++
	identity := fmt.Sprintf("%s/user-%d", e.Prefix, e.seq)
	e.mu.Unlock()
	k := shardkey.NewKeyspaceID(e.RegionCode(t, region), []byte(identity))
	id := e.NewID(t, shardkey.KindUser, k)
	tok, _, err := e.Tokens.Issue(accesstoken.Subject{UserID: id, KSID: k, Role: "client", Region: region})
	if err != nil {
		t.Fatal(err)
	}
	return User{ID: id, KSID: k, Region: region, Token: tok}
}

// NewID makes an ID of kind owned by owner.
func (e *Env) NewID(t testing.TB, kind shardkey.Kind, owner shardkey.KeyspaceID) shardkey.ID {
	t.Helper()
	id, err := e.IDs.New(kind, owner)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// APIKeySecret is the secret of every API key APIKey makes: the one a stand-in node accepts.
var APIKeySecret = strings.Repeat("A", 43)

// APIKey returns an API key (as a client sends it) owned by u, with APIKeySecret as its secret.
// Stand-in nodes check a key as a real node does, only against that secret: they answer 401 to any
// other, and mark the answers to a good one with X-Meridian-Key-Verified.
func (e *Env) APIKey(t testing.TB, u User) string {
	t.Helper()
	return "mk_" + e.NewID(t, shardkey.KindAPIKey, u.KSID).String() + "_" + APIKeySecret
}

// RefreshToken returns a well-formed refresh token of a family owned by u.
func (e *Env) RefreshToken(t testing.TB, u User) string {
	t.Helper()
	return "mrt_" + e.NewID(t, shardkey.KindTokenFamily, u.KSID).String() + "." + strings.Repeat("B", 43)
}

// Nodes returns the nodes started in region.
func (e *Env) Nodes(region string) []*Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*Node(nil), e.nodes[region]...)
}

// TotalHits is the number of API requests every node of region received.
func (e *Env) TotalHits(region string) int {
	n := 0
	for _, nd := range e.Nodes(region) {
		n += nd.Hits()
	}
	return n
}

// Node is a stand-in API node.
type Node struct {
	ID, Region, Addr string
	CheckID          string

	env   *Env
	srv   *httptest.Server
	hits  atomic.Int64
	table atomic.Pointer[topology.Table]
	h     atomic.Pointer[http.Handler]

	mu   sync.Mutex
	seen []Seen
}

// Seen is a request as the node received it, and what it echoes.
type Seen struct {
	Node    string      `json:"node"`
	Region  string      `json:"region"`
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	Query   string      `json:"query"`
	Header  http.Header `json:"header"`
	Body    string      `json:"body"`
	BodyLen int         `json:"body_len"`
}

// StartNode starts a stand-in node of region and registers it in Consul, passing.
func (e *Env) StartNode(t testing.TB, region string) *Node {
	t.Helper()
	return e.StartNodeAs(t, region, region)
}

// StartNodeAs starts a stand-in node registered in Consul as one of region's, passing, that presents
// the certificate of a node of certRegion (an impostor, or a wrong registration, when they differ).
func (e *Env) StartNodeAs(t testing.TB, region, certRegion string) *Node {
	t.Helper()
	e.mu.Lock()
	e.seq++
	id := fmt.Sprintf("%s-%s-%d", e.Prefix, region, e.seq)
	e.mu.Unlock()
	n := &Node{ID: id, Region: region, CheckID: "check-" + id, env: e}
	var h http.Handler = http.HandlerFunc(n.echo)
	if e.opts.Handler != nil {
		h = e.opts.Handler(n)
	}
	n.h.Store(&h)
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(n.serve))
	if e.opts.Plaintext {
		n.srv.Start()
	} else {
		n.srv.TLS = e.PKI.Source(t, mtls.Node(certRegion, id)).ServerConfig(mtls.AnyIdentity)
		n.srv.StartTLS()
	}
	n.Addr = n.srv.Listener.Addr().String()
	t.Cleanup(n.srv.Close)
	host, port := splitHostPort(t, n.Addr)
	r, _ := e.Topology().Region(region)
	err := e.Consul.Agent().ServiceRegister(&consul.AgentServiceRegistration{
		ID: id, Name: r.APIService, Address: host, Port: port,
		Check: &consul.AgentServiceCheck{CheckID: n.CheckID, TTL: "1h", Status: consul.HealthPassing},
	})
	if err != nil {
		t.Fatalf("routertest: registering node %s: %v", id, err)
	}
	t.Cleanup(func() { _ = e.Consul.Agent().ServiceDeregister(id) })
	e.mu.Lock()
	e.nodes[region] = append(e.nodes[region], n)
	e.mu.Unlock()
	return n
}

func splitHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	if _, err := fmt.Sscanf(p, "%d", &port); err != nil {
		t.Fatal(err)
	}
	return host, port
}

// URL is the node's base URL (https, unless Options.Plaintext): call it with Env.NodeClient.
func (n *Node) URL() string { return n.srv.URL }

// ClientTLS is the TLS configuration of a caller with the certificate of id that accepts nodes only
// (nil with Options.Plaintext).
func (e *Env) ClientTLS(t testing.TB, id mtls.Identity) *tls.Config {
	t.Helper()
	if e.opts.Plaintext {
		return nil
	}
	return e.PKI.Source(t, id).ClientConfig(mtls.NodesOnly)
}

// Hits is the number of API requests the node received (the JWKS not counted).
func (n *Node) Hits() int { return int(n.hits.Load()) }

// Seen returns the API requests the node received, in order.
func (n *Node) Seen() []Seen {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Seen(nil), n.seen...)
}

// SetHandler replaces the node's handler for API requests.
func (n *Node) SetHandler(h http.Handler) { n.h.Store(&h) }

// SetTable gives the node a topology of its own: it then answers 421 with a replay hint for data
// homed elsewhere, like a real node. nil serves everything.
func (n *Node) SetTable(tab *topology.Table) { n.table.Store(tab) }

// Fail marks the node's Consul check critical; Pass marks it passing again.
func (n *Node) Fail(t testing.TB) {
	t.Helper()
	if err := n.env.Consul.Agent().UpdateTTL(n.CheckID, "stopped by the test", consul.HealthCritical); err != nil {
		t.Fatal(err)
	}
}

// Pass marks the node's Consul check passing.
func (n *Node) Pass(t testing.TB) {
	t.Helper()
	if err := n.env.Consul.Agent().UpdateTTL(n.CheckID, "", consul.HealthPassing); err != nil {
		t.Fatal(err)
	}
}

// Kill stops the node without telling Consul: connections are refused from now on.
func (n *Node) Kill() {
	n.srv.CloseClientConnections()
	n.srv.Close()
}

func (n *Node) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Meridian-Region", n.Region)
	if r.URL.Path == "/api/v1/auth/jwks.json" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*n.env.jwks.Load())
		return
	}
	n.hits.Add(1)
	if scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "ApiKey") {
		kid, err := credential.APIKeyID(key)
		if err != nil || !strings.HasSuffix(key, "_"+APIKeySecret) {
			n.record(r, nil)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthenticated","message":"invalid API key"}}`)
			return
		}
		w.Header().Set(wire.KeyVerified, kid.String())
	}
	if tab := n.table.Load(); tab != nil {
		if k, ok := n.ksidOf(r); ok {
			if rt, err := tab.Lookup(k); err == nil && rt.Region.Name != n.Region {
				n.record(r, nil)
				w.Header().Set("X-Meridian-Replay-Region", rt.Region.Name)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusMisdirectedRequest)
				_, _ = fmt.Fprintf(w, `{"error":{"code":"wrong_region","message":"the data is homed in region %s"}}`, rt.Region.Name)
				return
			}
		}
	}
	(*n.h.Load()).ServeHTTP(w, r)
}

// ksidOf finds whose data r is about, as a node does: an ID in the path, else the token's subject.
func (n *Node) ksidOf(r *http.Request) (shardkey.KeyspaceID, bool) {
	for _, seg := range strings.Split(r.URL.Path, "/") {
		if id, err := shardkey.ParseID(seg); err == nil {
			return id.KeyspaceID(), true
		}
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if s, err := n.env.verifier.Verify(tok); err == nil {
			return s.KSID, true
		}
	}
	return 0, false
}

func (n *Node) record(r *http.Request, body []byte) Seen {
	s := Seen{Node: n.ID, Region: n.Region, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: string(body), BodyLen: len(body)}
	if len(s.Body) > 4096 {
		s.Body = s.Body[:4096]
	}
	n.mu.Lock()
	n.seen = append(n.seen, s)
	n.mu.Unlock()
	return s
}

// echo answers 200 with what the node received.
func (n *Node) echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := n.record(r, body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}

// Echo is the default handler, for tests that wrap it.
func (n *Node) Echo() http.Handler { return http.HandlerFunc(n.echo) }

// Router is a running router.
type Router struct {
	*router.Router
	// URL is the public listener's base URL; OpsURL the ops listener's (/healthz, /readyz, /metrics).
	URL, OpsURL string
	Region      string
	logs        *syncBuffer
	cancel      context.CancelFunc
	done        chan error
	opsDone     chan error
}

// DefaultRouterConfig is the configuration StartRouter uses before mutate: the Env's Consul, Redis
// and topology, test tokens, and rate limits high enough not to interfere.
func (e *Env) DefaultRouterConfig(region string) router.Config {
	cfg := router.DefaultConfig()
	cfg.Region = region
	cfg.ConsulAddr, cfg.ConsulTokenFile = e.ConsulAddr, e.ConsulAgent.TokenFile(local.RoleRouter)
	cfg.TopologyKey = e.Key
	cfg.RedisAddr = e.RedisAddr
	cfg.TokenIssuer, cfg.TokenAudience = Issuer, Audience
	cfg.IPLimit = ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}
	cfg.PrincipalLimit = ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}
	cfg.ShutdownTimeout = 5 * time.Second
	if e.opts.Plaintext {
		cfg.PlaintextUpstream = true
	} else {
		cfg.TLS = e.routerTLS[region]
	}
	return cfg
}

// StartRouter starts a router of region on loopback and waits until it is ready. mutate (may be nil)
// edits its configuration first. Its log is kept for Logs and AccessLog.
func (e *Env) StartRouter(t testing.TB, region string, mutate func(*router.Config)) *Router {
	t.Helper()
	logs := &syncBuffer{}
	return e.startRouter(t, region, mutate, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), logs)
}

// StartRouterLogged is StartRouter with the router logging to log (benchmarks log JSON to io.Discard,
// as production logs JSON to a pipe). Logs and AccessLog then see nothing.
func (e *Env) StartRouterLogged(t testing.TB, region string, mutate func(*router.Config), log *slog.Logger) *Router {
	t.Helper()
	return e.startRouter(t, region, mutate, log, &syncBuffer{})
}

func (e *Env) startRouter(t testing.TB, region string, mutate func(*router.Config), log *slog.Logger, logs *syncBuffer) *Router {
	t.Helper()
	cfg := e.DefaultRouterConfig(region)
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := router.New(cfg, log)
	if err != nil {
		t.Fatalf("routertest: router.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt := &Router{Router: r, URL: "http://" + ln.Addr().String(), OpsURL: "http://" + ops.Addr().String(), Region: region,
		logs: logs, cancel: cancel, done: make(chan error, 1), opsDone: make(chan error, 1)}
	go func() { rt.done <- r.Serve(ctx, ln) }()
	go func() { rt.opsDone <- r.ServeOps(ctx, ops) }()
	t.Cleanup(func() { rt.Stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, missing := r.Ready()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("routertest: router %s not ready after 30s; waiting for %v\n%s", region, missing, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return rt
}

// Stop stops the router (idempotent).
func (r *Router) Stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	for name, done := range map[string]chan error{"Serve": r.done, "ServeOps": r.opsDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("routertest: router %s: %s: %v", r.Region, name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("routertest: router %s: %s did not stop", r.Region, name)
		}
	}
}

// Logs returns what the router logged (JSON lines).
func (r *Router) Logs() string { return r.logs.String() }

// AccessLog returns the access-log line of the request with the given X-Request-ID, or nil if none
// is written within 5 seconds (lines are written after the response, on a goroutine of their own).
func (r *Router) AccessLog(requestID string) map[string]any {
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(r.logs.String(), "\n") {
			if !strings.Contains(line, requestID) {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request" && m["request_id"] == requestID {
				return m
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
