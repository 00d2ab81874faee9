// Package cluster runs real Meridian API nodes and edge routers together, for the end-to-end tests in
// e2e/ and the benchmarks in bench/ that measure through real nodes: shards, topology and signing key
// from deploy/local/fixture (databases on the test PostgreSQL, the topology in the test Consul under a
// key of the cluster's own, the test Redis), then api.Node and router.Router serving on loopback
// exactly as cmd/api and cmd/router run them: with mutual TLS between routers and nodes and between
// nodes (certificates from the fixture's CA; each node has a plain-HTTP operations listener for its
// Consul check).
//
// It is the one package that links api and router together; tests of either side use their own
// harness (api/internal/apitest, router/routertest) and never this one.
package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api"
	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/mtls/mtlstest"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/router"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Cluster is a running set of nodes over the example topology.
type Cluster struct {
	Topology   *topology.Topology
	ConsulAddr string
	// ConsulAgent is the test Consul: nodes and routers get their roles' tokens from it, and tests
	// that act as shardmgr take testenv.ConsulClient(tb, c.ConsulAgent, local.RoleShardmgr) and
	// ConsulAgent.TokenFile(local.RoleShardmgr).
	ConsulAgent *local.Consul
	Key         string
	// Nodes maps a region to its node's base URL (https: call it with NodeClient).
	Nodes map[string]string
	// DSN maps a shard to a connection string for direct queries (the baseline).
	DSN map[string]string
	// KeyDir holds the signing keys; TokenIssuer/TokenAudience are the nodes' token settings.
	KeyDir string
	// MailDir is where every node delivers its mail (verification links), one .eml file per message.
	MailDir string
	// Google is the stand-in OpenID Connect provider every node signs "google" users in with.
	Google *OIDCProvider
	fx     *fixture.Fixture
	mu     sync.Mutex
	ops    map[string]string // a node's API base URL → its operations listener's
	stops  map[string][]func()
	seq    map[string]int
}

// PublicURL is the nodes' public base URL: OAuth callbacks and verification links name it.
const PublicURL = "http://127.0.0.1"

// Token settings of the nodes (the fixture's).
const (
	TokenIssuer   = fixture.Issuer
	TokenAudience = fixture.Audience
)

// Start runs one node in each of regions (every region when none is given). Everything stops at the
// end of tb.
func Start(tb testing.TB, regions ...string) *Cluster {
	tb.Helper()
	fx := fixture.New(tb, fixture.Options{Shards: true, MaxConns: 32, Consul: true})
	c := &Cluster{Topology: fx.Topology, ConsulAddr: fx.ConsulAddr, ConsulAgent: fx.ConsulAgent, Key: fx.Key, Nodes: map[string]string{}, DSN: fx.DSN, KeyDir: fx.KeyDir(tb), fx: fx, stops: map[string][]func(){},
		MailDir: tb.TempDir(), Google: startOIDCProvider(tb), seq: map[string]int{}, ops: map[string]string{}}
	if len(regions) == 0 {
		for _, r := range c.Topology.Regions {
			regions = append(regions, r.Name)
		}
	}
	for _, region := range regions {
		c.Nodes[region] = c.StartNode(tb, region)
	}
	// Peers and routers find nodes through Consul's health checks, which pass a moment after start.
	for _, region := range regions {
		c.WaitPassing(tb, region, 1)
	}
	return c
}

// WaitPassing waits until region has n passing nodes in Consul.
func (c *Cluster) WaitPassing(tb testing.TB, region string, n int) {
	tb.Helper()
	cc := c.fx.Consul
	r, _ := c.Topology.Region(region)
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _, err := cc.Health().Service(r.APIService, "", true, nil)
		if err == nil && len(entries) >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d nodes of %s not passing in Consul: %v", n, region, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// OpsURL is the base URL of the operations listener (plain HTTP: /readyz, /metrics) of the node
// StartNode returned api for.
func (c *Cluster) OpsURL(api string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[api]
}

// StopRegion stops every node of region (each leaves Consul first, as on SIGTERM).
func (c *Cluster) StopRegion(region string) {
	for _, stop := range c.stops[region] {
		stop()
	}
	c.stops[region] = nil
}

// StopNode stops the i-th node started in region (it leaves Consul first, as on SIGTERM).
func (c *Cluster) StopNode(region string, i int) {
	c.stops[region][i]()
}

// StartNode starts one more node in region and returns its base URL.
func (c *Cluster) StartNode(tb testing.TB, region string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	token, err := c.ConsulAgent.Token(local.RoleNode)
	if err != nil {
		tb.Fatal(err)
	}
	ops, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c.seq[region]++
	nodeID := fmt.Sprintf("%s-%d", region, c.seq[region])
	tf := c.fx.PKI.Files(tb, mtls.Node(region, nodeID))
	cfg := api.Config{
		Region: region, Listen: ln.Addr().String(), RegisterService: true,
		TLS: "on", TLSCAFile: tf.CA, TLSCertFile: tf.Cert, TLSKeyFile: tf.Key,
		ConsulAddr: c.ConsulAddr, ConsulToken: api.Secret(token), TopologyKey: c.Key, TopologyCache: filepath.Join(tb.TempDir(), "topology.json"),
		TokenIssuer: TokenIssuer, TokenAudience: TokenAudience, AccessTTL: 15 * time.Minute, RefreshTTL: 24 * time.Hour, SessionMaxAge: 48 * time.Hour,
		SigningKeyDir: c.KeyDir, EmailPepper: "bench-pepper-0123456789",
		StateKey: "bench-state-key-0123456789", PublicURL: PublicURL, FreezeWait: 2 * time.Second,
		MailDir: c.MailDir, SMTPTLS: "starttls", SMTPTimeout: 10 * time.Second, MailFrom: "8thDegree <no-reply@e2e.test>",
		GoogleClientID: OIDCClientID, GoogleClientSecret: OIDCClientSecret, GoogleAuthURL: c.Google.URL + "/authorize",
		GoogleTokenURL: c.Google.URL + "/token", GoogleIssuer: c.Google.URL, GoogleJWKSURL: c.Google.URL + "/jwks",
		ShutdownGrace: 5 * time.Second, StartTimeout: 30 * time.Second, LogLevel: "error", FeatureAPIKeys: true,
		// Benchmarks measure the node, not the rate limiter's refusals.
		RateLimitUserPerMinute: 6_000_000, RateLimitUserBurst: 100_000, RateLimitIPPerMinute: 6_000_000, RateLimitIPBurst: 100_000,
		// Every client of the cluster is on loopback: the address's failed logins must not add up.
		LoginAccountFreeFailures: 5, LoginIPFreeFailures: 100_000,
		// The cluster's routers connect from 127.0.0.1: their X-Forwarded-For names the client.
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		// The local embedder: no network.
		EmbedDims: 384, EmbedDailyTokens: 1_000_000,
	}
	node, err := api.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := node.ServeListeners(ctx, ln, ops)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cluster: node %s: %v\n", region, err)
		}
		done <- err
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); _ = <-done }) } // Run's error was printed above
	tb.Cleanup(stop)
	c.stops[region] = append(c.stops[region], stop)
	opsBase := "http://" + ops.Addr().String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := httpGet(opsBase + "/readyz")
		if err == nil && resp == 200 {
			api := "https://" + ln.Addr().String()
			c.mu.Lock()
			c.ops[api] = opsBase
			c.mu.Unlock()
			return api
		}
		if time.Now().After(deadline) {
			tb.Fatalf("node %s not ready: %v %d", region, err, resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartRouter starts an edge router of region in front of the cluster, with rate limits high enough not
// to interfere and the access log discarded; mutate (may be nil) edits its configuration first. It
// returns the router's base URL once the router is ready.
func (c *Cluster) StartRouter(tb testing.TB, region string, mutate func(*router.Config)) (string, *router.Router) {
	tb.Helper()
	cfg := router.DefaultConfig()
	cfg.Region = region
	cfg.ConsulAddr, cfg.TopologyKey, cfg.RedisAddr = c.ConsulAddr, c.Key, c.fx.RedisAddr
	cfg.ConsulTokenFile = c.ConsulAgent.TokenFile(local.RoleRouter)
	cfg.TokenIssuer, cfg.TokenAudience = TokenIssuer, TokenAudience
	cfg.IPLimit = ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}
	cfg.PrincipalLimit = cfg.IPLimit
	cfg.AccessLog = io.Discard
	cfg.TLS = c.fx.PKI.Files(tb, mtls.Router(region))
	if mutate != nil {
		mutate(&cfg)
	}
	rt, err := router.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Serve(ctx, ln) }()
	tb.Cleanup(func() { cancel(); _ = <-done }) // Serve's error after cancel is the context's
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ok, _ := rt.Ready(); ok {
			break
		}
		if time.Now().After(deadline) {
			_, missing := rt.Ready()
			tb.Fatalf("router %s not ready: waiting for %v", region, missing)
		}
	}
	return "http://" + ln.Addr().String(), rt
}

// NodeClient is Client with the certificate of an edge router (of region): the client to call the
// cluster's nodes directly, as a router does.
func (c *Cluster) NodeClient(tb testing.TB, region string) *http.Client {
	tb.Helper()
	hc := Client()
	tr := hc.Transport.(*http.Transport)
	tr.TLSClientConfig = c.fx.PKI.Source(tb, mtls.Router(region)).ClientConfig(mtls.NodesOnly)
	tb.Cleanup(tr.CloseIdleConnections)
	return hc
}

// PKI is the CA of the cluster's certificates.
func (c *Cluster) PKI() *mtlstest.PKI { return c.fx.PKI }
