package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/ratelimit/admission"
	"github.com/8thdegree/meridian/router/internal/accesslog"
	"github.com/8thdegree/meridian/router/internal/gateway"
	"github.com/8thdegree/meridian/router/internal/headers"
	"github.com/8thdegree/meridian/router/internal/metrics"
	"github.com/8thdegree/meridian/router/internal/tokenkeys"
	"github.com/8thdegree/meridian/router/internal/upstream"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// ErrAlreadyRunning is returned by a second call to Run or Serve.
var ErrAlreadyRunning = errors.New("router: already running")

// Router is an edge router. Build it with New, then Serve (or Run, and mount Handler yourself).
type Router struct {
	cfg Config
	log *slog.Logger

	watcher  *topostore.Watcher
	pools    *upstream.Regions
	verifier *tokenkeys.Verifier
	limiter  *admission.Limiter
	metrics  *metrics.Metrics
	gw       *gateway.Gateway
	// transports holds a transport per region (region → *http.Transport), made at the first call to
	// the region: each accepts only a node certificate of its region (mtls.NodeOf).
	transports sync.Map
	// tls is the router's certificate for its calls to nodes (nil with PlaintextUpstream).
	tls *mtls.Source

	running atomic.Bool

	redisMu   sync.Mutex // guards redis and redisAddr
	redis     *redis.Client
	redisAddr string
}

// New builds a router from cfg. It does not connect to anything: Run and Serve do.
func New(cfg Config, log *slog.Logger) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "router", "router_region", cfg.Region)
	cc := consul.DefaultConfig()
	cc.Address, cc.Token, cc.TokenFile = cfg.ConsulAddr, cfg.ConsulToken, cfg.ConsulTokenFile
	client, err := consul.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("router: consul client: %w", err)
	}
	r := &Router{cfg: cfg, log: log, metrics: metrics.New()}
	r.watcher, err = topostore.NewWatcher(client, topostore.WatcherConfig{Key: cfg.TopologyKey, CachePath: cfg.TopologyCache, AllowStale: true, Logger: log})
	if err != nil {
		return nil, err
	}
	sc := upstream.DefaultConfig()
	sc.Discovery.Consul = client
	sc.RetryAfter = cfg.RegionRetryAfter
	sc.Health = upstream.Health{EjectAfter: cfg.EjectAfter, EjectBase: cfg.EjectBase, EjectMax: cfg.EjectMax,
		BreakerFailures: cfg.BreakerFailures, BreakerOpenFor: cfg.BreakerOpenFor}
	if r.pools, err = upstream.New(sc, log); err != nil {
		return nil, err
	}
	if r.limiter, err = admission.New(nil, admission.DefaultConfig(), log); err != nil {
		return nil, err
	}
	if cfg.RedisAddr != "" {
		r.useRedis(cfg.RedisAddr)
	}
	scheme := "http"
	if !cfg.PlaintextUpstream {
		if r.tls, err = mtls.Load(cfg.TLS, mtls.Options{Log: log}); err != nil {
			return nil, fmt.Errorf("router: Config.TLS: %w", err)
		}
		if id := r.tls.Identity(); id != mtls.Router(cfg.Region) {
			return nil, fmt.Errorf("router: Config.TLS: the certificate is of %s, not of %s", id, mtls.Router(cfg.Region))
		}
		scheme = "https"
	}
	gwc := gateway.Config{
		Region:         cfg.Region,
		MaxBody:        cfg.MaxBodyBytes,
		BodyTimeout:    cfg.BodyReadTimeout,
		MaxBuffered:    cfg.MaxBufferedBytes,
		Trust:          headers.Trust{Proxies: cfg.TrustedProxies},
		IPLimit:        cfg.IPLimit,
		PrincipalLimit: cfg.PrincipalLimit,
		MaxAttempts:    cfg.MaxAttempts,
		JWKSPath:       cfg.JWKSPath,
		VerifiedKeys:   1 << 16,
		VerifiedKeyTTL: cfg.APIKeyVerifiedFor,
		UpstreamScheme: scheme,
	}
	// The verifier fetches keys through the gateway (a node of the region), and the gateway verifies
	// tokens with the verifier: the source is bound after both exist.
	src := &lateSource{}
	vc := tokenkeys.DefaultConfig()
	vc.Issuer, vc.Audience, vc.Leeway, vc.Refresh = cfg.TokenIssuer, cfg.TokenAudience, cfg.TokenLeeway, cfg.JWKSRefresh
	if r.verifier, err = tokenkeys.New(vc, src, log, nil); err != nil {
		return nil, err
	}
	deps := gateway.Deps{
		Log: log, Metrics: r.metrics, Pools: r.pools, Verifier: r.verifier, Limiter: r.limiter,
		Transports: r.transportTo, Ready: r.Ready,
	}
	if cfg.AccessLog != nil {
		deps.AccessLog = accesslog.New(cfg.AccessLog, "component", "router", "router_region", cfg.Region)
	}
	r.gw, err = gateway.New(gwc, deps)
	if err != nil {
		return nil, err
	}
	src.gw = r.gw
	r.registerGauges()
	return r, nil
}

// transportTo is the transport of calls to region's nodes. With TLS it accepts only a server whose
// certificate names an API node of region: a node of another region at an address Consul lists for
// region (a wrong registration, or an impostor) fails the handshake, which the gateway handles as any
// connection failure (another node, then 502/503), and is never sent the request. Each region has its
// own connection pool, so a connection verified for one region never carries another's requests.
func (r *Router) transportTo(region string) http.RoundTripper {
	if t, ok := r.transports.Load(region); ok {
		return t.(*http.Transport)
	}
	var tlsConfig *tls.Config
	if r.tls != nil {
		tlsConfig = r.tls.ClientConfig(mtls.NodeOf(region))
	}
	t, _ := r.transports.LoadOrStore(region, &http.Transport{
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   r.cfg.DialTimeout,
		DialContext:           (&net.Dialer{Timeout: r.cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   r.cfg.MaxIdleConnsPerNode,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: r.cfg.UpstreamTimeout,
		// Bodies pass through as the node encoded them; the client asked for what it accepts.
		DisableCompression: true,
	})
	return t.(*http.Transport)
}

// lateSource lets the verifier fetch keys through the gateway built after it.
type lateSource struct{ gw *gateway.Gateway }

var _ tokenkeys.Source = (*lateSource)(nil)

func (s *lateSource) JWKS(ctx context.Context) ([]byte, error) { return s.gw.JWKS(ctx) }

// Handler is the public handler: the API under /api/v1 and /api, nothing else (the router's own
// /healthz, /readyz and /metrics are on OpsHandler only).
func (r *Router) Handler() http.Handler { return r.gw }

// OpsHandler serves only /healthz, /readyz and /metrics, for an operations listener of its own
// (ServeOps), which clients must not reach.
func (r *Router) OpsHandler() http.Handler { return r.gw.OpsHandler() }

// Ready reports whether the router can route: a topology in service, the token keys, and an answer
// from Consul for every region's nodes. When it cannot, it lists what it waits for.
func (r *Router) Ready() (bool, []string) {
	var missing []string
	if r.gw.Table() == nil {
		missing = append(missing, "topology")
	}
	if !r.verifier.Ready() {
		missing = append(missing, "token_keys")
	}
	for name, p := range r.pools.Pools() {
		if !p.Known() {
			missing = append(missing, "nodes:"+name)
		}
	}
	return len(missing) == 0, missing
}

// NodeStatus is an API node as the router sees it.
type NodeStatus struct {
	ID, Addr string
	InFlight int
	// Ejected: passive outlier ejection keeps it out for now. Open: its circuit breaker is open.
	Ejected, Open bool
}

// Nodes returns the passing API nodes of region the router knows, with their state.
func (r *Router) Nodes(region string) []NodeStatus {
	p := r.pools.Pool(region)
	if p == nil {
		return nil
	}
	now := time.Now()
	var out []NodeStatus
	for _, n := range p.Nodes() {
		out = append(out, NodeStatus{ID: n.ID, Addr: n.Addr, InFlight: n.InFlight(), Ejected: n.Ejected(now), Open: n.Open()})
	}
	return out
}

// TopologyVersion is the version of the topology in service (0 before the first).
func (r *Router) TopologyVersion() uint64 {
	if t := r.gw.Table(); t != nil {
		return t.Version()
	}
	return 0
}

// Run follows the topology, the regions' nodes and the token keys, and flushes rate-limit debits,
// until ctx is done. Handler answers while it runs.
func (r *Router) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	forPools, stopPools := r.watcher.Subscribe(4)
	forTable, stopTable := r.watcher.Subscribe(4)
	defer stopPools()
	defer stopTable()

	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				r.log.Error("router task ended", "task", name, "err", err)
				cancel()
			}
		}()
	}
	run("topology", r.watcher.Run)
	run("nodes", func(ctx context.Context) error { return r.pools.Run(ctx, forPools) })
	run("table", func(ctx context.Context) error { return r.followTable(ctx, forTable) })
	run("token_keys", r.verifier.Run)
	run("rate_limits", r.limiter.Run)
	run("access_log", r.gw.RunAccessLog)
	wg.Wait()

	r.transports.Range(func(_, t any) bool {
		t.(*http.Transport).CloseIdleConnections()
		return true
	})
	r.redisMu.Lock()
	if r.redis != nil {
		_ = r.redis.Close()
	}
	r.redisMu.Unlock()
	return nil
}

// followTable compiles every topology version put in service and makes it the routing table.
func (r *Router) followTable(ctx context.Context, topos <-chan *topology.Topology) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case t, ok := <-topos:
			if !ok {
				return nil
			}
			tab, err := topology.Compile(t)
			if err != nil {
				// The watcher only serves validated documents; keep the table in service.
				r.log.Error("topology does not compile; keeping the table in service", "version", t.Version, "err", err)
				continue
			}
			own, ok := t.Region(r.cfg.Region)
			if !ok {
				r.log.Error("the router's region is not in the topology; anonymous requests have nowhere to go", "version", t.Version)
			}
			r.gw.SetTable(tab)
			r.log.Info("routing table in service", "version", t.Version, "regions", len(t.Regions), "relocations", len(t.Relocations))
			if r.cfg.RedisAddr == "" && own.RedisAddr != "" {
				r.useRedis(own.RedisAddr)
			}
		}
	}
}

// useRedis points the rate limiter at the Redis at addr, unless it already is.
func (r *Router) useRedis(addr string) {
	r.redisMu.Lock()
	defer r.redisMu.Unlock()
	if addr == r.redisAddr {
		return
	}
	old := r.redis
	r.redis = redis.NewClient(&redis.Options{
		Addr:     addr,
		Password: r.cfg.RedisPassword,
		// A rate-limit decision that waits long is worse than a local one.
		DialTimeout:  250 * time.Millisecond,
		ReadTimeout:  200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond,
		MaxRetries:   -1,
		// One dial per call: the limiter's own timeout and breaker decide when to give up on Redis.
		DialerRetries: 1,
	})
	r.redisAddr = addr
	r.limiter.SetRedis(r.redis)
	r.log.Info("rate limits shared through redis", "addr", addr)
	if old != nil {
		// In-flight calls on the old client fail and fall back to local decisions.
		_ = old.Close()
	}
}

// Serve runs the router (Run) and answers HTTP on ln until ctx is done, then stops taking requests,
// lets those in flight finish (up to ShutdownTimeout) and returns.
func (r *Router) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.gw,
		ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
		IdleTimeout:       r.cfg.IdleTimeout,
		MaxHeaderBytes:    r.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	return r.serve(ctx, srv, ln)
}

// ServeOps answers the operations endpoints (/healthz, /readyz, /metrics) on ln until ctx is done.
// They are on no other listener: ln belongs on an address only operators and health checkers reach.
func (r *Router) ServeOps(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.gw.OpsHandler(),
		ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
		// The ops endpoints take no body and answer from memory.
		ReadTimeout:    r.cfg.ReadHeaderTimeout,
		IdleTimeout:    r.cfg.IdleTimeout,
		MaxHeaderBytes: r.cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

func (r *Router) serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(runCtx) }()

	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	r.log.Info("router listening", "addr", ln.Addr().String())

	var err error
	select {
	case err = <-srvErr:
	case err = <-runErr:
		if err == nil {
			err = ctx.Err()
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		r.log.Warn("shutdown did not finish in time", "err", serr)
	}
	stopRun()
	if rerr := <-runErr; rerr != nil && err == nil {
		err = rerr
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// registerGauges adds the metrics read at scrape time.
func (r *Router) registerGauges() {
	m := r.metrics
	m.GaugeFunc("meridian_router_topology_version", "Version of the topology in service (0: none).",
		func() float64 { return float64(r.TopologyVersion()) })
	m.GaugeFunc("meridian_router_ready", "1 when the router can route (topology, token keys, nodes known).",
		func() float64 {
			if ok, _ := r.Ready(); ok {
				return 1
			}
			return 0
		})
	m.GaugeFunc("meridian_router_buffered_body_bytes", "Bytes held by request bodies being read or forwarded (bounded by MaxBufferedBytes).",
		func() float64 { return float64(r.gw.Buffered()) })
	m.GaugeFunc("meridian_router_token_cache_entries", "Verified access tokens cached.",
		func() float64 { return float64(r.verifier.Len()) })
	m.CounterFunc("meridian_router_ratelimit_optimistic_total", "Rate-limit decisions made from the last known shared budget.",
		func() float64 { return float64(r.limiter.Stats().Optimistic) })
	m.CounterFunc("meridian_router_ratelimit_synced_total", "Rate-limit decisions that waited for Redis.",
		func() float64 { return float64(r.limiter.Stats().Synced) })
	m.CounterFunc("meridian_router_ratelimit_remembered_total", "Requests refused by a refusal still in force, without a Redis call.",
		func() float64 { return float64(r.limiter.Stats().Remembered) })
	m.CounterFunc("meridian_router_ratelimit_local_total", "Rate-limit decisions made locally (Redis down or not configured).",
		func() float64 { return float64(r.limiter.Stats().Local) })
	m.NodeStates(func() []metrics.NodeCount {
		now := time.Now()
		var out []metrics.NodeCount
		for name, p := range r.pools.Pools() {
			var avail, ejected, open int
			for _, n := range p.Nodes() {
				switch {
				case n.Ejected(now):
					ejected++
				case n.Open():
					open++
				default:
					avail++
				}
			}
			out = append(out, metrics.NodeCount{Region: name, State: "available", Count: avail},
				metrics.NodeCount{Region: name, State: "ejected", Count: ejected},
				metrics.NodeCount{Region: name, State: "open", Count: open})
		}
		return out
	})
}
