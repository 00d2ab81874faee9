// Package api is Meridian's regional API node: it serves the public contract (../shared/API.md) from the
// shards of its region. Node wires the parts together: the topology watcher and its disk copy, the shard
// pools that follow it, the region's Redis, token keys, calls to other regions' nodes, the feature
// packages' routes and the middleware; it registers itself in Consul with a health check and shuts down
// gracefully.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/ratelimit/admission"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Node is a running API node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	consul   *consul.Client
	watcher  *topostore.Watcher
	pools    *shardpool.Manager
	redis    *redis.Client
	tokens   *accesstoken.Tokens
	app      *feature.Deps
	registry *prometheus.Registry
	handler  http.Handler
	// admission holds the node's shares of the per-user and per-IP rate-limit budgets.
	admission *admission.Limiter
	// shutdownTracing flushes and stops the span exporter, if one is configured.
	shutdownTracing func(context.Context) error
}

// New builds a node: it reads the keys, connects to Consul and Redis lazily, and waits (bounded by ctx)
// for the first topology from Consul or the disk copy. Serve it with Run.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("region", cfg.Region)
	keys, err := accesstoken.LoadKeyDir(cfg.SigningKeyDir)
	if err != nil {
		return nil, fmt.Errorf("config: MERIDIAN_SIGNING_KEY_DIR: %w", err)
	}
	tokens, err := accesstoken.New(accesstoken.Config{Issuer: cfg.TokenIssuer, Audience: cfg.TokenAudience, TTL: cfg.AccessTTL, Leeway: 30 * time.Second, CacheSize: 10000}, keys, nil)
	if err != nil {
		return nil, err
	}
	ccfg := consul.DefaultConfig()
	ccfg.Address = cfg.ConsulAddr
	cc, err := consul.NewClient(ccfg)
	if err != nil {
		return nil, fmt.Errorf("config: CONSUL_HTTP_ADDR: %w", err)
	}
	wcfg := topostore.DefaultWatcherConfig()
	wcfg.Key, wcfg.CachePath, wcfg.Logger = cfg.TopologyKey, cfg.TopologyCache, log
	watcher, err := topostore.NewWatcher(cc, wcfg)
	if err != nil {
		return nil, err
	}
	pcfg := shardpool.DefaultConfig()
	pcfg.ApplicationName = "meridian-api-" + cfg.Region
	pools, err := shardpool.New(pcfg, log)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, consul: cc, watcher: watcher, pools: pools, tokens: tokens, registry: prometheus.NewRegistry()}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return n, nil
}

// Run serves on ln until ctx ends, then drains in-flight requests (up to ShutdownGrace) and leaves Consul.
func (n *Node) Run(ctx context.Context, ln net.Listener) error {
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	watchDone := make(chan error, 1)
	go func() { watchDone <- n.watcher.Run(wctx) }()
	select {
	case <-n.watcher.Ready():
	case err := <-watchDone:
		return fmt.Errorf("topology watcher: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the topology: %w", ctx.Err())
	}
	topo := n.watcher.Current()
	if topo == nil {
		return errNoTopology
	}
	region, err := n.cfg.checkRegion(topo)
	if err != nil {
		return err
	}
	if err := n.pools.Apply(ctx, topo); err != nil {
		return err
	}
	defer n.pools.Close()
	sub, unsubscribe := n.watcher.Subscribe(4)
	defer unsubscribe()
	go n.pools.Follow(wctx, sub)

	redisAddr := n.cfg.RedisAddr
	if redisAddr == "" {
		redisAddr = region.RedisAddr
	}
	n.redis = redis.NewClient(&redis.Options{Addr: redisAddr, DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: 1, ContextTimeoutEnabled: true})
	defer n.redis.Close()

	n.app = &feature.Deps{
		Region:     n.cfg.Region,
		Pools:      n.pools,
		Redis:      n.redis,
		IDs:        shardkey.NewGenerator(nil, nil),
		Log:        n.log,
		Now:        time.Now,
		FreezeWait: n.cfg.FreezeWait,
	}
	n.handler, err = n.buildHandler()
	if err != nil {
		return err
	}
	admDone := make(chan error, 1)
	go func() { admDone <- n.admission.Run(wctx) }()
	// Waiting flushes the last debits to Redis; Run's error is its context's, which we cancelled.
	defer func() { stopWatch(); _ = <-admDone }()

	srv := &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	n.log.Info("api node serving", "addr", ln.Addr().String(), "topology_version", topo.Version, "topology_source", n.watcher.Source())

	serviceID := ""
	if n.cfg.RegisterService {
		if serviceID, err = n.register(region.APIService, ln.Addr()); err != nil {
			n.log.Error("registering in Consul failed; routers will not find this node until it succeeds", "err", err)
		}
	}

	select {
	case err = <-serveErr:
	case <-ctx.Done():
	}
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
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if n.shutdownTracing != nil {
		if terr := n.shutdownTracing(sctx); terr != nil {
			n.log.Warn("flushing traces", "err", terr)
		}
	}
	return err
}

// register adds the node to Consul's catalog under the region's API service, checked on /readyz.
func (n *Node) register(service string, addr net.Addr) (string, error) {
	adv := n.cfg.AdvertiseAddr
	if adv == "" {
		adv = addr.String()
	}
	host, portStr, err := net.SplitHostPort(adv)
	if err != nil {
		return "", err
	}
	port, _ := strconv.Atoi(portStr)
	id := n.cfg.NodeID
	if id == "" {
		hn, _ := os.Hostname()
		id = fmt.Sprintf("%s-%s-%d", service, hn, port)
	}
	reg := &consul.AgentServiceRegistration{
		ID:      id,
		Name:    service,
		Address: host,
		Port:    port,
		Tags:    []string{"region=" + n.cfg.Region},
		Meta:    map[string]string{"region": n.cfg.Region},
		Check: &consul.AgentServiceCheck{
			HTTP:                           "http://" + net.JoinHostPort(host, portStr) + "/readyz",
			Interval:                       "1s",
			Timeout:                        "1s",
			DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := n.consul.Agent().ServiceRegister(reg); err != nil {
		return "", err
	}
	return id, nil
}

// Handler returns the node's HTTP handler (after Run has started).
func (n *Node) Handler() http.Handler { return n.handler }

func (n *Node) opsHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"/healthz": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
		}),
		"/readyz":  http.HandlerFunc(n.readyz),
		"/metrics": promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{Registry: n.registry}),
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
		out["topology"] = map[string]any{"version": tab.Version(), "source": n.watcher.Source()}
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
