// Package api is Meridian's regional API node: it serves the public contract (../shared/API.md) from the
// shards of its region. It is built like the edge router: New builds every part from a validated Config
// (the topology watcher and its disk copy, the shard pools that follow it, the region's Redis, token
// keys, calls to other regions' nodes, the feature packages' routes and the middleware) and connects
// to nothing; Run runs the named background tasks; Serve answers HTTP on a listener, registers in
// Consul with a health check, and shuts down gracefully.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/discovery"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/ratelimit/admission"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Node is one API node: everything it serves with, built by New and run by Run and Serve.
type Node struct {
	cfg      Config
	log      *slog.Logger
	consul   *consul.Client
	watcher  *topostore.Watcher
	pools    *shardpool.Manager
	redis    *redis.Client
	tokens   *tokenissue.Issuer
	verifier *accesstoken.Verifier
	// regions follows the healthy API nodes of every region, for calls to other regions.
	regions  *discovery.Watcher
	deps     *feature.Deps
	registry *prometheus.Registry
	handler  http.Handler
	// tls is the node's certificate and CA bundle (nil with MERIDIAN_TLS=off): its API listener
	// requires client certificates, and its calls to other nodes present it.
	tls *mtls.Source
	// admission holds the node's shares of the per-user and per-IP rate-limit budgets.
	admission *admission.Limiter
	// shutdownTracing flushes and stops the span exporter, if one is configured.
	shutdownTracing func(context.Context) error
	// regionCode is the code of the region file, when one is configured; zero otherwise.
	regionCode    shardkey.Region
	hasRegionFile bool
	// redisAddr is the region's Redis as the configuration or the topology in force names it; the
	// client dials whatever it holds, so a topology change of redis_addr needs no new client.
	redisAddr atomic.Pointer[string]
	tasks     []feature.Task
	// ready is closed once the first topology is applied: the node can serve.
	ready     chan struct{}
	readyOnce sync.Once
	running   atomic.Bool
	// applied is signalled after the pools applied a topology (topologyApplied); published is the
	// version the node's Consul registration carries (publishVersion).
	applied   chan struct{}
	published atomic.Uint64
}

// ErrAlreadyRunning is returned by Run and Serve on a node that runs already.
var ErrAlreadyRunning = errors.New("api: node is already running")

// New builds a node from cfg: it reads the region file and the signing keys, and builds the topology
// watcher, the shard pools, the Redis client, every feature and the HTTP handler. It connects to
// nothing: Run follows the topology and starts the background tasks, Serve answers HTTP.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("region", cfg.Region)
	if len(cfg.TrustedProxies) == 0 {
		log.Warn("MERIDIAN_TRUSTED_PROXIES is empty: X-Forwarded-For is ignored, and behind edge routers every client is counted as the router it came through")
	}
	n := &Node{cfg: cfg, log: log, registry: prometheus.NewRegistry(), ready: make(chan struct{}), applied: make(chan struct{}, 1)}
	if cfg.RegionFile != "" {
		r, err := topology.LoadRegionFile(cfg.RegionFile)
		if err != nil {
			return nil, fmt.Errorf("config: MERIDIAN_REGION_FILE: %w", err)
		}
		if r.Name != cfg.Region {
			return nil, fmt.Errorf("config: MERIDIAN_REGION_FILE is for region %s, not MERIDIAN_REGION=%s", r.Name, cfg.Region)
		}
		n.regionCode, n.hasRegionFile = r.Code, true
	}
	keys, err := tokenissue.LoadKeyDir(cfg.SigningKeyDir)
	if err != nil {
		return nil, fmt.Errorf("config: MERIDIAN_SIGNING_KEY_DIR: %w", err)
	}
	if n.tokens, err = tokenissue.New(tokenissue.Config{Issuer: cfg.TokenIssuer, Audience: cfg.TokenAudience, TTL: cfg.AccessTTL}, keys, nil); err != nil {
		return nil, err
	}
	if n.verifier, err = accesstoken.NewVerifier(accesstoken.Config{Issuer: cfg.TokenIssuer, Audience: cfg.TokenAudience, Leeway: verifierLeeway, CacheSize: 10000}, keys.Public(), nil); err != nil {
		return nil, err
	}
	if cfg.TLS == "on" {
		files := mtls.Files{CA: cfg.TLSCAFile, Cert: cfg.TLSCertFile, Key: cfg.TLSKeyFile}
		if n.tls, err = mtls.Load(files, mtls.Options{Log: log}); err != nil {
			return nil, fmt.Errorf("config: MERIDIAN_TLS_*_FILE: %w", err)
		}
		if id := n.tls.Identity(); !id.IsNode() || id.Region != cfg.Region {
			return nil, fmt.Errorf("config: MERIDIAN_TLS_CERT_FILE is the certificate of %s, not of an API node of %s", id, cfg.Region)
		}
	}
	ccfg := consul.DefaultConfig()
	ccfg.Address, ccfg.Token = cfg.ConsulAddr, string(cfg.ConsulToken)
	if n.consul, err = consul.NewClient(ccfg); err != nil {
		return nil, fmt.Errorf("config: CONSUL_HTTP_ADDR: %w", err)
	}
	dcfg := discovery.DefaultConfig()
	dcfg.Consul = n.consul
	if n.regions, err = discovery.New(dcfg, log); err != nil {
		return nil, err
	}
	wcfg := topostore.DefaultWatcherConfig()
	wcfg.Key, wcfg.CachePath, wcfg.Logger = cfg.TopologyKey, cfg.TopologyCache, log
	if n.watcher, err = topostore.NewWatcher(n.consul, wcfg); err != nil {
		return nil, err
	}
	pcfg := shardpool.DefaultConfig()
	pcfg.ApplicationName = "meridian-api-" + cfg.Region
	if n.pools, err = shardpool.New(pcfg, log); err != nil {
		return nil, err
	}
	if cfg.RedisAddr != "" {
		n.redisAddr.Store(&cfg.RedisAddr)
	}
	var dialer net.Dialer
	n.redis = redis.NewClient(&redis.Options{
		Addr: "region-redis", // a label: the dialer below connects to the current address
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr := n.redisAddr.Load()
			if addr == nil {
				return nil, errNoRedisAddr
			}
			return dialer.DialContext(ctx, network, *addr)
		},
		DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		MaxRetries: 1, ContextTimeoutEnabled: true,
	})
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newKeyRangeRequests(n.pools, cfg.Region))
	n.registry.MustRegister(n.topologyGauges()...)
	n.deps = &feature.Deps{
		Region:     cfg.Region,
		Pools:      n.pools,
		Redis:      n.redis,
		IDs:        shardkey.NewGenerator(nil, nil),
		Log:        log,
		Now:        time.Now,
		FreezeWait: cfg.FreezeWait,
	}
	asm, err := n.buildHandler()
	if err != nil {
		return nil, err
	}
	n.tasks = append([]feature.Task{
		{Name: "topology", Run: n.watcher.Run},
		{Name: "shard_pools", Run: n.followTopology},
		{Name: "peer_nodes", Run: n.followPeers},
		// Flushes the last debits to Redis when it stops.
		{Name: "rate_limits", Run: n.admission.Run},
	}, asm.tasks...)
	return n, nil
}

var errNoRedisAddr = errors.New("the region's Redis address is not known yet (no topology)")

// Tasks names the node's background tasks, in the order Run starts them.
func (n *Node) Tasks() []string {
	names := make([]string, len(n.tasks))
	for i, t := range n.tasks {
		names[i] = t.Name
	}
	return names
}

// Run runs the node's named background tasks (the topology watcher, the shard pools that follow it,
// the rate-limit settlement, and the features' own tasks) until ctx is done or one of them fails; a
// failure stops the others and is returned. The first topology must name the node's region (and
// agree with the region file): otherwise Run fails, since the node has nothing to serve.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for _, t := range n.tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t.Run(ctx)
			if err == nil || ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return
			}
			n.log.Error("node task ended", "task", t.Name, "err", err)
			errMu.Lock()
			if first == nil {
				first = fmt.Errorf("%s: %w", t.Name, err)
			}
			errMu.Unlock()
			cancel()
		}()
	}
	wg.Wait()
	n.pools.Close()
	_ = n.redis.Close()
	return first
}

// followTopology applies every topology the watcher puts in service to the shard pools and the
// Redis address; the first one makes the node ready.
func (n *Node) followTopology(ctx context.Context) error {
	sub, unsubscribe := n.watcher.Subscribe(4)
	defer unsubscribe()
	select {
	case <-n.watcher.Ready():
	case <-ctx.Done():
		return nil
	}
	apply := func(t *topology.Topology) error {
		region, err := n.checkRegion(t)
		if err != nil {
			return err
		}
		if err := n.pools.Apply(ctx, t); err != nil {
			return err
		}
		n.topologyApplied()
		if n.cfg.RedisAddr == "" && region.RedisAddr != "" {
			if cur := n.redisAddr.Load(); cur == nil || *cur != region.RedisAddr {
				addr := region.RedisAddr
				n.redisAddr.Store(&addr)
			}
		}
		return nil
	}
	topo := n.watcher.Current()
	if topo == nil {
		return errNoTopology
	}
	if err := apply(topo); err != nil {
		return err
	}
	n.readyOnce.Do(func() { close(n.ready) })
	n.log.Info("topology in service", "version", topo.Version, "source", n.watcher.Source())
	for {
		select {
		case <-ctx.Done():
			return nil
		case t, ok := <-sub:
			if !ok {
				return nil
			}
			if err := apply(t); err != nil {
				// The node keeps serving with the topology it has.
				n.log.Error("topology not applied", "version", t.Version, "err", err)
			}
		}
	}
}

// followPeers keeps the healthy API nodes of every region of the topology in view, for calls to
// other regions' nodes.
func (n *Node) followPeers(ctx context.Context) error {
	sub, unsubscribe := n.watcher.Subscribe(4)
	defer unsubscribe()
	return n.regions.Run(ctx, sub)
}

// checkRegion checks that t knows the node's region and agrees with the region file.
func (n *Node) checkRegion(t *topology.Topology) (topology.Region, error) {
	r, ok := t.Region(n.cfg.Region)
	if !ok {
		return r, fmt.Errorf("config: MERIDIAN_REGION=%s is not a region of topology version %d", n.cfg.Region, t.Version)
	}
	if n.hasRegionFile && n.regionCode != r.Code {
		return r, fmt.Errorf("config: region file code %s differs from the topology's %s for %s", n.regionCode, r.Code, r.Name)
	}
	return r, nil
}

// Serve runs the node (Run) and, once its first topology is applied (within StartTimeout), answers
// on ln (mutual TLS, unless MERIDIAN_TLS=off), serves the operations endpoints on MERIDIAN_OPS_LISTEN
// when it is set, and registers in Consul. When ctx is done it leaves Consul, drains the requests in
// flight (up to ShutdownGrace), stops Run and flushes traces.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	var ops net.Listener
	if n.cfg.OpsListen != "" {
		var err error
		if ops, err = net.Listen("tcp", n.cfg.OpsListen); err != nil {
			return fmt.Errorf("MERIDIAN_OPS_LISTEN: %w", err)
		}
	}
	return n.ServeListeners(ctx, ln, ops)
}

// ServeListeners is Serve with the operations listener given: ops (plain HTTP, nil for none) serves
// /healthz, /readyz and /metrics, and Consul's health check goes there. Without it the check goes to
// ln, which with TLS on asks for a certificate Consul does not have: registering so is refused.
func (n *Node) ServeListeners(ctx context.Context, ln, ops net.Listener) error {
	if n.tls != nil && ops == nil && n.cfg.RegisterService {
		ln.Close()
		return errors.New("config: with MERIDIAN_TLS=on, Consul's health check needs MERIDIAN_OPS_LISTEN")
	}
	// Run outlives ctx by the drain: requests in flight still need the pools.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(runCtx) }()
	stopped := func(err error) error {
		stopRun()
		if rerr := <-runErr; err == nil {
			err = rerr
		}
		return err
	}
	start := time.NewTimer(n.cfg.StartTimeout)
	defer start.Stop()
	select {
	case <-n.ready:
	case err := <-runErr:
		if err == nil {
			err = errNoTopology
		}
		return err
	case <-start.C:
		return stopped(fmt.Errorf("no topology within MERIDIAN_START_TIMEOUT=%s: %w", n.cfg.StartTimeout, errNoTopology))
	case <-ctx.Done():
		return stopped(fmt.Errorf("waiting for the topology: %w", ctx.Err()))
	}

	srv := &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	if n.tls != nil {
		ln = tls.NewListener(ln, n.tls.ServerConfig(mtls.AnyIdentity))
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	checkAddr := ln.Addr()
	var opsSrv *http.Server
	if ops != nil {
		opsSrv = &http.Server{Handler: n.OpsHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, ErrorLog: srv.ErrorLog}
		go func() { serveErr <- opsSrv.Serve(ops) }()
		checkAddr = ops.Addr()
	}
	n.log.Info("api node serving", "addr", ln.Addr().String(), "tls", n.tls != nil, "ops_addr", addrString(ops), "tasks", n.Tasks())

	serviceID, stopPublishing := "", func() {}
	if n.cfg.RegisterService {
		serviceID, stopPublishing = n.joinCatalog(ctx, ln.Addr(), checkAddr)
	}

	var err error
	select {
	case err = <-serveErr:
	case err = <-runErr:
		runErr <- err // for stopped below
	case <-ctx.Done():
	}
	// The publisher stops first: a registration of its after the deregistration would put the node
	// back in the catalog.
	stopPublishing()
	if serviceID != "" {
		// Leave the catalog first, so routers stop sending before the listener closes.
		if derr := n.consul.Agent().ServiceDeregister(serviceID); derr != nil {
			n.log.Warn("deregistering from Consul", "err", derr)
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.ShutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if opsSrv != nil {
		if serr := opsSrv.Shutdown(sctx); serr != nil && err == nil {
			err = serr
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	err = stopped(err)
	if n.shutdownTracing != nil {
		if terr := n.shutdownTracing(sctx); terr != nil {
			n.log.Warn("flushing traces", "err", terr)
		}
	}
	return err
}

// Handler returns the node's HTTP handler, for tests and embedding; it needs Run to be running.
func (n *Node) Handler() http.Handler { return n.handler }

// OpsHandler serves /healthz, /readyz and /metrics alone, for the operations listener.
func (n *Node) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	for path, h := range n.opsHandlers() {
		mux.Handle(path, h)
	}
	return mux
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

func (n *Node) opsHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"/healthz": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
		}),
		"/readyz": http.HandlerFunc(n.readyz),
		// shardmgr/fleet asks here whether the node holds a topology version yet (api/fleet.go).
		"/topologyz": http.HandlerFunc(n.topologyz),
		"/metrics":   promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{Registry: n.registry}),
	}
}

// readyz reports the node's dependencies. It is ready (200) when it has a topology and at least one shard
// of its region answers; a shard or Redis that is down is reported but does not take the node out, since
// it still serves the rest of the region.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 800*time.Millisecond)
	defer cancel()
	out := map[string]any{"region": n.cfg.Region}
	status := http.StatusOK
	tab := n.pools.Table()
	if tab == nil {
		status = http.StatusServiceUnavailable
		out["topology"] = "missing"
	} else {
		topo := map[string]any{"version": tab.Version(), "source": n.watcher.Source()}
		if n.cfg.RegisterService {
			// What shardmgr/fleet sees of this node; it lags version only while a registration is
			// under way or Consul is away.
			topo["published"] = n.published.Load()
		}
		out["topology"] = topo
		targets := n.pools.Targets(n.cfg.Region)
		res := shardpool.Scatter(ctx, targets, shardpool.ScatterOptions{PerShardTimeout: 500 * time.Millisecond},
			func(ctx context.Context, t shardpool.Target) (struct{}, error) { return struct{}{}, t.Pool.Ping(ctx) })
		shards := map[string]string{}
		for _, v := range res.Values {
			shards[v.Shard] = "ok"
		}
		for _, f := range res.Failed {
			shards[f.Shard] = "unreachable"
		}
		out["shards"] = shards
		if len(res.Values) == 0 {
			status = http.StatusServiceUnavailable
		}
	}
	if err := n.redis.Ping(ctx).Err(); err != nil {
		out["redis"] = "unreachable"
	} else {
		out["redis"] = "ok"
	}
	if status != http.StatusOK {
		out["status"] = "not_ready"
	} else {
		out["status"] = "ready"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(out)
}
