// Command router runs Meridian's edge router: flags (each with an environment variable as default)
// into a router.Config, then router.Serve until SIGINT or SIGTERM. docs/router.md describes it.
//
//	router -region eu-west -listen :8000 -consul 127.0.0.1:8500
//
// Secrets come from the environment only: CONSUL_HTTP_TOKEN (or, better, a file named by
// CONSUL_HTTP_TOKEN_FILE or -consul-token-file), MERIDIAN_REDIS_PASSWORD. Calls to API nodes
// are mutual TLS with the certificate of -tls-cert and -tls-key (an identity
// spiffe://meridian/router/<region>) and the CA bundle -tls-ca; -tls off calls them over plain HTTP
// (nodes with MERIDIAN_TLS=off, tests only).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/8thdegree/meridian/router"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(1)
	}
}

// options are what the flags hold beyond router.Config.
type options struct {
	listen, opsListen        string
	ipLimit, principalLimit  string
	trustedProxies, logLevel string
	accessLog                string
	tls                      string
}

func run(args []string) error {
	cfg := router.DefaultConfig()
	var o options
	// A FlagSet of our own: the global one carries glog's flags (-v among them), registered by the
	// vitess key package that pkg/shardkey imports.
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, envOr(env, def), usage+" (env "+env+")")
	}
	var envErr error
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		d := def
		if v := os.Getenv(env); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("%s: %w", env, err)
			}
			d = parsed
		}
		fs.DurationVar(p, name, d, usage+" (env "+env+")")
	}
	str(&cfg.Region, "region", "MERIDIAN_REGION", "", "the region this router runs in (required)")
	str(&o.listen, "listen", "MERIDIAN_ROUTER_LISTEN", "127.0.0.1:8000", "address clients connect to")
	str(&o.opsListen, "ops-listen", "MERIDIAN_ROUTER_OPS_LISTEN", "127.0.0.1:8001", "address of /healthz, /readyz and /metrics, never on the public listener (off: not served)")
	str(&cfg.ConsulAddr, "consul", "CONSUL_HTTP_ADDR", "127.0.0.1:8500", "Consul agent HTTP address")
	str(&cfg.ConsulTokenFile, "consul-token-file", "CONSUL_HTTP_TOKEN_FILE", "", "file holding the router's Consul ACL token")
	str(&cfg.TopologyKey, "topology-key", "MERIDIAN_TOPOLOGY_KEY", cfg.TopologyKey, "Consul KV key of the topology")
	str(&cfg.TopologyCache, "topology-cache", "MERIDIAN_TOPOLOGY_CACHE", "", "file for the last good topology (served when Consul is away at start)")
	str(&cfg.RedisAddr, "redis", "MERIDIAN_REDIS_ADDR", "", "the region's Redis for shared rate limits (empty: the topology's)")
	str(&cfg.TokenIssuer, "token-issuer", "MERIDIAN_TOKEN_ISSUER", "https://api.8thdegree.example", "access tokens' issuer, as the API nodes set it")
	str(&cfg.TokenAudience, "token-audience", "MERIDIAN_TOKEN_AUDIENCE", "meridian-api", "access tokens' audience, as the API nodes set it")
	str(&o.ipLimit, "ip-limit", "MERIDIAN_ROUTER_IP_LIMIT", formatLimit(cfg.IPLimit.Rate, cfg.IPLimit.Period, cfg.IPLimit.Burst), "per client IP: RATE/PERIOD,BURST or off")
	str(&o.principalLimit, "principal-limit", "MERIDIAN_ROUTER_PRINCIPAL_LIMIT", formatLimit(cfg.PrincipalLimit.Rate, cfg.PrincipalLimit.Period, cfg.PrincipalLimit.Burst), "per user or API key: RATE/PERIOD,BURST or off")
	str(&o.trustedProxies, "trusted-proxies", "MERIDIAN_ROUTER_TRUSTED_PROXIES", "", "comma-separated CIDRs of load balancers whose X-Forwarded-For is believed")
	str(&o.tls, "tls", "MERIDIAN_TLS", "on", "on: call API nodes over mutual TLS; off: plain HTTP (tests only)")
	str(&cfg.TLS.CA, "tls-ca", "MERIDIAN_TLS_CA_FILE", "", "CA bundle that API nodes' certificates chain to (PEM)")
	str(&cfg.TLS.Cert, "tls-cert", "MERIDIAN_TLS_CERT_FILE", "", "the router's certificate (PEM), reloaded when it changes")
	str(&cfg.TLS.Key, "tls-key", "MERIDIAN_TLS_KEY_FILE", "", "the router's key (PEM), reloaded when it changes")
	str(&o.logLevel, "log-level", "MERIDIAN_LOG_LEVEL", "info", "debug, info, warn or error (events on stderr)")
	str(&o.accessLog, "access-log", "MERIDIAN_ROUTER_ACCESS_LOG", "stdout", "stdout, stderr, off, or a file path (JSON lines)")
	dur(&cfg.UpstreamTimeout, "upstream-timeout", "MERIDIAN_ROUTER_UPSTREAM_TIMEOUT", cfg.UpstreamTimeout, "wait for a node's response headers (504 after)")
	dur(&cfg.DialTimeout, "dial-timeout", "MERIDIAN_ROUTER_DIAL_TIMEOUT", cfg.DialTimeout, "connect to a node")
	dur(&cfg.ShutdownTimeout, "shutdown-timeout", "MERIDIAN_ROUTER_SHUTDOWN_TIMEOUT", cfg.ShutdownTimeout, "let requests in flight finish at shutdown")
	dur(&cfg.BodyReadTimeout, "body-timeout", "MERIDIAN_ROUTER_BODY_TIMEOUT", cfg.BodyReadTimeout, "read one request's body (408 after)")
	dur(&cfg.ReadHeaderTimeout, "header-timeout", "MERIDIAN_ROUTER_HEADER_TIMEOUT", cfg.ReadHeaderTimeout, "read one request's headers")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body", cfg.MaxBodyBytes, "largest request body in bytes (413 above)")
	fs.Int64Var(&cfg.MaxBufferedBytes, "max-buffered", cfg.MaxBufferedBytes, "bytes of request bodies held at once, all requests together (503 above)")
	fs.IntVar(&cfg.MaxAttempts, "max-attempts", cfg.MaxAttempts, "nodes one request is tried on in a region")
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg.ConsulToken = os.Getenv("CONSUL_HTTP_TOKEN")
	cfg.RedisPassword = os.Getenv("MERIDIAN_REDIS_PASSWORD")

	switch o.tls {
	case "on":
	case "off":
		cfg.PlaintextUpstream = true
	default:
		return fmt.Errorf("-tls: %q is neither on nor off", o.tls)
	}
	var err error
	if cfg.IPLimit, err = router.ParseLimit(o.ipLimit); err != nil {
		return fmt.Errorf("-ip-limit: %w", err)
	}
	if cfg.PrincipalLimit, err = router.ParseLimit(o.principalLimit); err != nil {
		return fmt.Errorf("-principal-limit: %w", err)
	}
	for _, p := range strings.Split(o.trustedProxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("-trusted-proxies: %w", err)
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, prefix)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	switch o.accessLog {
	case "stdout":
		cfg.AccessLog = os.Stdout
	case "stderr":
		cfg.AccessLog = os.Stderr
	case "off":
		cfg.AccessLog = io.Discard
	default:
		f, err := os.OpenFile(o.accessLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("-access-log: %w", err)
		}
		defer f.Close()
		cfg.AccessLog = f
	}

	r, err := router.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	if o.opsListen != "off" && o.opsListen != "" {
		ops, err := net.Listen("tcp", o.opsListen)
		if err != nil {
			return err
		}
		go func() {
			if err := r.ServeOps(ctx, ops); err != nil {
				log.Error("ops listener stopped", "err", err)
			}
		}()
	}
	return r.Serve(ctx, ln)
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func formatLimit(rate int, period time.Duration, burst int) string {
	return fmt.Sprintf("%d/%s,%d", rate, period, burst)
}
