package router

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Config is the router's configuration. DefaultConfig gives every field a value except Region,
// ConsulAddr, TokenIssuer and TokenAudience.
type Config struct {
	// Region is the name of the region the router runs in (a region of the topology): anonymous
	// requests, logins and registrations without a region go there.
	Region string

	// ConsulAddr is the Consul agent's HTTP address (host:port). ConsulTokenFile is a file holding
	// the router's ACL token (read at start; wins over ConsulToken), ConsulToken the token itself.
	// With neither, the client takes CONSUL_HTTP_TOKEN_FILE or CONSUL_HTTP_TOKEN from the process
	// environment, as consul/api does. The token needs the router's policy: read the topology key
	// and the API services' health (deploy/local's ConsulRoles, docs/security.md).
	ConsulAddr      string
	ConsulToken     string
	ConsulTokenFile string
	// TopologyKey is the Consul KV key of the topology; TopologyCache a file for the last good copy
	// ("" keeps none), served when Consul is unreachable at start.
	TopologyKey   string
	TopologyCache string

	// RedisAddr is the region's Redis for shared rate limits; empty takes the address the topology
	// gives the router's region. RedisPassword is its password, if any.
	RedisAddr     string
	RedisPassword string

	// TokenIssuer and TokenAudience must match the API nodes' token settings; TokenLeeway tolerates
	// clock skew.
	TokenIssuer   string
	TokenAudience string
	TokenLeeway   time.Duration
	// JWKSPath is where nodes publish their key set; JWKSRefresh how often it is fetched again.
	JWKSPath    string
	JWKSRefresh time.Duration

	// MaxBodyBytes is the largest request body accepted (413 above); every body is buffered so that
	// a request can be retried or replayed.
	MaxBodyBytes int64
	// BodyReadTimeout bounds the reading of one request's body, from its first byte to its last: a
	// client that sends it slower gets 408 and its connection is closed.
	BodyReadTimeout time.Duration
	// MaxBufferedBytes bounds the bytes of request bodies the router holds at once, all requests
	// together; a request that would go over gets 503 with Retry-After. Body buffers grow as bytes
	// arrive, so a client holds only what it has sent. It must be at least MaxBodyBytes.
	MaxBufferedBytes int64
	// IPLimit and PrincipalLimit are the edge's rate limits per client IP (IPv6: per /64) and per
	// principal (user or API key). A zero Limit disables one.
	IPLimit        ratelimit.Limit
	PrincipalLimit ratelimit.Limit
	// APIKeyVerifiedFor is how long an API key a node verified is charged to its own budget up front.
	// A key not known to be verified (a first request, or a made-up secret with someone's key ID) is
	// charged to the client's IP only, and to the key once a node says it verified the secret.
	APIKeyVerifiedFor time.Duration

	// TLS names the router's certificate (an identity spiffe://meridian/router/<Region>), its key, and
	// the CA bundle that nodes' certificates chain to: the router calls nodes over mutual TLS only, and
	// accepts only a node's certificate from them. The files are reloaded when they change.
	TLS mtls.Files
	// PlaintextUpstream calls nodes over plain HTTP instead, without TLS (nodes run with
	// MERIDIAN_TLS=off): for tests only; the local cluster and the test harnesses never set it.
	PlaintextUpstream bool

	// UpstreamTimeout bounds the wait for a node's response headers (504 after it); DialTimeout a
	// connection to a node.
	UpstreamTimeout time.Duration
	DialTimeout     time.Duration
	// MaxIdleConnsPerNode is how many idle keep-alive connections are kept to each node.
	MaxIdleConnsPerNode int
	// MaxAttempts bounds the nodes one request is tried on in a region.
	MaxAttempts int
	// EjectAfter consecutive connection failures eject a node (a refused connection at once) for
	// EjectBase, doubling per ejection in a row up to EjectMax.
	EjectAfter          int
	EjectBase, EjectMax time.Duration
	// BreakerFailures consecutive failures (connection failures, 502/503/504, timeouts) open a node's
	// circuit for BreakerOpenFor.
	BreakerFailures uint32
	BreakerOpenFor  time.Duration
	// RegionRetryAfter is the Retry-After of a region with no node at all.
	RegionRetryAfter time.Duration

	// TrustedProxies are the load balancers in front of the router whose X-Forwarded-For and
	// X-Forwarded-Proto are believed. Empty: the peer address is the client.
	TrustedProxies []netip.Prefix

	// AccessLog, if set, receives the access log as JSON lines (the shape of slog's JSON handler),
	// written by the router's own encoder, several times cheaper than a slog handler. nil sends the
	// lines through the router's slog logger instead.
	AccessLog io.Writer

	// HTTP server settings. ReadHeaderTimeout bounds the reading of a request's headers (the body has
	// BodyReadTimeout); IdleTimeout a keep-alive connection's wait for its next request.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	ShutdownTimeout   time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		TopologyKey:         topostore.DefaultKey,
		TokenLeeway:         30 * time.Second,
		JWKSPath:            "/api/v1/auth/jwks.json",
		JWKSRefresh:         5 * time.Minute,
		MaxBodyBytes:        1 << 20,
		BodyReadTimeout:     15 * time.Second,
		MaxBufferedBytes:    256 << 20,
		IPLimit:             ratelimit.Limit{Rate: 600, Period: time.Minute, Burst: 300},
		PrincipalLimit:      ratelimit.Limit{Rate: 1200, Period: time.Minute, Burst: 300},
		APIKeyVerifiedFor:   time.Minute,
		UpstreamTimeout:     30 * time.Second,
		DialTimeout:         time.Second,
		MaxIdleConnsPerNode: 256,
		MaxAttempts:         3,
		EjectAfter:          3,
		EjectBase:           2 * time.Second,
		EjectMax:            30 * time.Second,
		BreakerFailures:     5,
		BreakerOpenFor:      5 * time.Second,
		RegionRetryAfter:    5 * time.Second,
		ReadHeaderTimeout:   10 * time.Second,
		IdleTimeout:         2 * time.Minute,
		MaxHeaderBytes:      64 << 10,
		ShutdownTimeout:     15 * time.Second,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"JWKSRefresh", c.JWKSRefresh}, {"BodyReadTimeout", c.BodyReadTimeout}, {"APIKeyVerifiedFor", c.APIKeyVerifiedFor}, {"UpstreamTimeout", c.UpstreamTimeout}, {"DialTimeout", c.DialTimeout},
		{"EjectBase", c.EjectBase}, {"BreakerOpenFor", c.BreakerOpenFor},
		{"ReadHeaderTimeout", c.ReadHeaderTimeout}, {"IdleTimeout", c.IdleTimeout}, {"ShutdownTimeout", c.ShutdownTimeout},
	}
	switch {
	case c.Region == "":
		return errors.New("router: Config.Region is required")
	case c.ConsulAddr == "":
		return errors.New("router: Config.ConsulAddr is required")
	case c.TopologyKey == "":
		return errors.New("router: Config.TopologyKey is required")
	case c.TokenIssuer == "":
		return errors.New("router: Config.TokenIssuer is required")
	case c.TokenAudience == "":
		return errors.New("router: Config.TokenAudience is required")
	case c.TokenLeeway < 0:
		return errors.New("router: Config.TokenLeeway must not be negative")
	case c.JWKSPath == "" || c.JWKSPath[0] != '/':
		return fmt.Errorf("router: Config.JWKSPath %q must be an absolute path", c.JWKSPath)
	case c.MaxBodyBytes <= 0:
		return errors.New("router: Config.MaxBodyBytes must be positive")
	case c.MaxBufferedBytes < c.MaxBodyBytes:
		return errors.New("router: Config.MaxBufferedBytes must be at least MaxBodyBytes")
	case c.MaxIdleConnsPerNode < 1:
		return errors.New("router: Config.MaxIdleConnsPerNode must be at least 1")
	case c.MaxAttempts < 1 || c.MaxAttempts > 8:
		return errors.New("router: Config.MaxAttempts must be between 1 and 8")
	case c.EjectAfter < 1:
		return errors.New("router: Config.EjectAfter must be at least 1")
	case c.EjectMax < c.EjectBase:
		return errors.New("router: Config.EjectMax must be at least EjectBase")
	case c.BreakerFailures < 1:
		return errors.New("router: Config.BreakerFailures must be at least 1")
	case c.RegionRetryAfter < time.Second:
		return errors.New("router: Config.RegionRetryAfter must be at least 1s")
	case c.MaxHeaderBytes < 4096:
		return errors.New("router: Config.MaxHeaderBytes must be at least 4096")
	case !c.PlaintextUpstream && c.TLS.Validate() != nil:
		return fmt.Errorf("router: Config.TLS: %w (or set PlaintextUpstream, for tests only)", c.TLS.Validate())
	}
	for _, p := range positive {
		if p.d <= 0 {
			return fmt.Errorf("router: Config.%s must be positive", p.name)
		}
	}
	for name, l := range map[string]ratelimit.Limit{"IPLimit": c.IPLimit, "PrincipalLimit": c.PrincipalLimit} {
		if l == (ratelimit.Limit{}) {
			continue
		}
		if err := l.Validate(); err != nil {
			return fmt.Errorf("router: Config.%s: %w", name, err)
		}
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return errors.New("router: Config.TrustedProxies holds an invalid prefix")
		}
	}
	return nil
}

// ParseLimit reads a rate limit written "RATE/PERIOD,BURST" ("600/1m,300"), "RATE/PERIOD" (the burst
// is the rate), or "off" (no limit, the zero Limit).
func ParseLimit(s string) (ratelimit.Limit, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "" {
		return ratelimit.Limit{}, nil
	}
	spec, burstText, hasBurst := strings.Cut(s, ",")
	rateText, periodText, ok := strings.Cut(spec, "/")
	if !ok {
		return ratelimit.Limit{}, fmt.Errorf("rate limit %q: want RATE/PERIOD[,BURST], e.g. 600/1m,300", s)
	}
	rate, err := strconv.Atoi(strings.TrimSpace(rateText))
	if err != nil {
		return ratelimit.Limit{}, fmt.Errorf("rate limit %q: rate: %w", s, err)
	}
	period, err := time.ParseDuration(strings.TrimSpace(periodText))
	if err != nil {
		return ratelimit.Limit{}, fmt.Errorf("rate limit %q: period: %w", s, err)
	}
	burst := rate
	if hasBurst {
		if burst, err = strconv.Atoi(strings.TrimSpace(burstText)); err != nil {
			return ratelimit.Limit{}, fmt.Errorf("rate limit %q: burst: %w", s, err)
		}
	}
	l := ratelimit.Limit{Rate: rate, Period: period, Burst: burst}
	if err := l.Validate(); err != nil {
		return ratelimit.Limit{}, fmt.Errorf("rate limit %q: %w", s, err)
	}
	return l, nil
}
