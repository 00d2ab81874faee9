// Package apinodes runs real Meridian API nodes for end-to-end tests and benchmarks: shard databases on the test PostgreSQL,
// the topology in the test Consul under a key of the benchmark's own, the test Redis, and api.Node
// serving on loopback exactly as cmd/api does.
package apinodes

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/router"
	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Cluster is a running set of nodes over the example topology.
type Cluster struct {
	Topology   *topology.Topology
	ConsulAddr string
	Key        string
	// Nodes maps a region to its node's base URL.
	Nodes map[string]string
	// DSN maps a shard to a connection string for direct queries (the baseline).
	DSN map[string]string
	// KeyDir holds the signing keys; TokenIssuer/TokenAudience are the nodes' token settings.
	KeyDir string

	stops map[string][]func()
}

// Token settings of the nodes.
const (
	TokenIssuer   = "https://api.8thdegree.example"
	TokenAudience = "meridian-api"
)

// Start runs one node in each of regions (every region when none is given). Everything stops at the
// end of tb.
func Start(tb testing.TB, regions ...string) *Cluster {
	tb.Helper()
	ctx := context.Background()
	agent := testenv.Consul(tb)
	pg := testenv.Postgres(tb)
	topo := topology.Example()
	c := &Cluster{Topology: topo, ConsulAddr: agent.HTTPAddr(), Nodes: map[string]string{}, DSN: map[string]string{}, KeyDir: tb.TempDir(), stops: map[string][]func(){}}
	var targets []migrate.Target
	for i := range topo.Shards {
		dsn := pg.NewDatabase(tb)
		pc, err := pgx.ParseConfig(dsn)
		if err != nil {
			tb.Fatal(err)
		}
		topo.Shards[i].Conn = topology.Conn{Host: pc.Host, Port: int(pc.Port), Database: pc.Database, User: pc.User, SSLMode: "disable", MaxConns: 32}
		c.DSN[topo.Shards[i].Name] = dsn
		targets = append(targets, migrate.Target{Shard: topo.Shards[i].Name, DSN: dsn})
	}
	if _, err := migrate.Up(ctx, targets, migrate.Options{Concurrency: 6}); err != nil {
		tb.Fatal(err)
	}
	stamp := time.Now().UnixNano()
	for i := range topo.Regions {
		topo.Regions[i].APIService = fmt.Sprintf("bench-api-%s-%d", topo.Regions[i].Name, stamp)
		topo.Regions[i].RedisAddr = testenv.Redis(tb)
	}
	ccfg := consul.DefaultConfig()
	ccfg.Address = c.ConsulAddr
	cc, err := consul.NewClient(ccfg)
	if err != nil {
		tb.Fatal(err)
	}
	c.Key = fmt.Sprintf("bench/%d/topology", stamp)
	if _, err := topostore.NewStore(cc, c.Key).Create(ctx, topo); err != nil {
		tb.Fatal(err)
	}
	k, err := accesstoken.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	if err := accesstoken.WriteKeyFile(filepath.Join(c.KeyDir, "k.pem"), k); err != nil {
		tb.Fatal(err)
	}
	if len(regions) == 0 {
		for _, r := range topo.Regions {
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
	ccfg := consul.DefaultConfig()
	ccfg.Address = c.ConsulAddr
	cc, err := consul.NewClient(ccfg)
	if err != nil {
		tb.Fatal(err)
	}
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
	cfg := api.Config{
		Region: region, Listen: ln.Addr().String(), RegisterService: true,
		ConsulAddr: c.ConsulAddr, TopologyKey: c.Key, TopologyCache: filepath.Join(tb.TempDir(), "topology.json"),
		TokenIssuer: TokenIssuer, TokenAudience: TokenAudience, AccessTTL: 15 * time.Minute, RefreshTTL: 24 * time.Hour,
		SigningKeyDir: c.KeyDir, InternalToken: "bench-internal-token-0123", EmailPepper: "bench-pepper-0123456789",
		StateKey: "bench-state-key-0123456789", PublicURL: "http://127.0.0.1", FreezeWait: 2 * time.Second,
		ShutdownGrace: 5 * time.Second, LogLevel: "error", FeatureAPIKeys: true,
		// Benchmarks measure the node, not the rate limiter's refusals.
		RateLimitUserPerMinute: 6_000_000, RateLimitUserBurst: 100_000, RateLimitIPPerMinute: 6_000_000, RateLimitIPBurst: 100_000,
	}
	node, err := api.New(context.Background(), cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := node.Run(ctx, ln)
		if err != nil {
			fmt.Fprintf(os.Stderr, "apinodes: node %s: %v\n", region, err)
		}
		done <- err
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); _ = <-done }) } // Run's error was printed above
	tb.Cleanup(stop)
	c.stops[region] = append(c.stops[region], stop)
	base := "http://" + ln.Addr().String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := httpGet(base + "/readyz")
		if err == nil && resp == 200 {
			return base
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
	cfg.ConsulAddr, cfg.TopologyKey, cfg.RedisAddr = c.ConsulAddr, c.Key, testenv.Redis(tb)
	cfg.TokenIssuer, cfg.TokenAudience = TokenIssuer, TokenAudience
	cfg.IPLimit = ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}
	cfg.PrincipalLimit = cfg.IPLimit
	cfg.AccessLog = io.Discard
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
