package api

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/matching/embed"
	"github.com/8thdegree/meridian/internal/breaker"

	"github.com/caarlos0/env/v11"

	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/mailer"
	"github.com/8thdegree/meridian/internal/ratelimit"
)

// Secret is a configuration value that must never be logged. It is read from the environment variable
// or, when NAME_FILE is set, from that file.
type Secret string

// String redacts the value, so a Secret printed by accident shows nothing.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Config is the API node's configuration, read from the environment (FromEnv) and checked by Validate.
type Config struct {
	// Region is the name of the node's region in the topology.
	Region string `env:"MERIDIAN_REGION"`
	// RegionFile, if set, is the region's file (deploy/regions/<region>.yaml); its code must match the topology's.
	RegionFile string `env:"MERIDIAN_REGION_FILE"`
	// Listen is the address the node serves on.
	Listen string `env:"MERIDIAN_LISTEN" envDefault:"127.0.0.1:8080"`
	// AdvertiseAddr is the host:port registered in Consul; defaults to Listen.
	AdvertiseAddr string `env:"MERIDIAN_ADVERTISE_ADDR"`
	// NodeID names the node in Consul; defaults to <region>-<host>-<port>.
	NodeID string `env:"MERIDIAN_NODE_ID"`
	// RegisterService registers the node in Consul with a health check on /readyz.
	RegisterService bool `env:"MERIDIAN_REGISTER_SERVICE" envDefault:"true"`

	ConsulAddr string `env:"CONSUL_HTTP_ADDR" envDefault:"127.0.0.1:8500"`
	// ConsulToken is the node's Consul ACL token (CONSUL_HTTP_TOKEN_FILE names a file holding it): it
	// reads the topology and the API services' health, and registers the region's service.
	ConsulToken Secret `env:"CONSUL_HTTP_TOKEN"`
	TopologyKey string `env:"MERIDIAN_TOPOLOGY_KEY" envDefault:"meridian/topology"`
	// TopologyCache is the disk copy of the last good topology, loaded when Consul is unreachable at start.
	TopologyCache string `env:"MERIDIAN_TOPOLOGY_CACHE"`
	// RedisAddr overrides the region's redis_addr from the topology.
	RedisAddr string `env:"MERIDIAN_REDIS_ADDR"`

	TokenIssuer   string        `env:"MERIDIAN_TOKEN_ISSUER" envDefault:"https://api.8thdegree.example"`
	TokenAudience string        `env:"MERIDIAN_TOKEN_AUDIENCE" envDefault:"meridian-api"`
	AccessTTL     time.Duration `env:"MERIDIAN_ACCESS_TTL" envDefault:"15m"`
	RefreshTTL    time.Duration `env:"MERIDIAN_REFRESH_TTL" envDefault:"720h"`
	// SessionMaxAge is a session's absolute lifetime from its login, however often it refreshes.
	SessionMaxAge time.Duration `env:"MERIDIAN_SESSION_MAX_AGE" envDefault:"2160h"`
	// SigningKeyDir holds the Ed25519 signing keys (*.pem); the newest file name signs.
	SigningKeyDir string `env:"MERIDIAN_SIGNING_KEY_DIR"`
	// TLS is "on" (the default): the node serves its API over mutual TLS only, with the certificate
	// of TLSCertFile and TLSKeyFile, to clients whose certificate chains to TLSCAFile (edge routers and
	// other nodes); it calls other regions' nodes so too. The files are reloaded when they change.
	// "off" serves plain HTTP, where internal routes do not exist and calls to other regions fail: for
	// tests of a single node only; the local cluster and the test harnesses run with TLS on.
	TLS         string `env:"MERIDIAN_TLS" envDefault:"on"`
	TLSCAFile   string `env:"MERIDIAN_TLS_CA_FILE"`
	TLSCertFile string `env:"MERIDIAN_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"MERIDIAN_TLS_KEY_FILE"`
	// OpsListen, when set, serves /healthz, /readyz and /metrics over plain HTTP on their own address,
	// where Consul's health check goes; it is required with TLS on and RegisterService, since the check
	// has no client certificate.
	OpsListen string `env:"MERIDIAN_OPS_LISTEN"`
	// EmailPepper keys the email hashes of the cross-region email directory.
	EmailPepper Secret `env:"MERIDIAN_EMAIL_PEPPER"`
	// StateKey signs OAuth state cookies.
	StateKey Secret `env:"MERIDIAN_OAUTH_STATE_KEY"`
	// PublicURL is the node's public base URL as clients see it (OAuth redirect URIs).
	PublicURL string `env:"MERIDIAN_PUBLIC_URL" envDefault:"http://127.0.0.1:8000"`

	// Mail (email verification links) goes to an SMTP submission server (MERIDIAN_SMTP_ADDR) or, for
	// the local cluster and tests, into a folder as one .eml file per message (MERIDIAN_MAIL_DIR).
	// Exactly one of the two is set.
	MailDir      string        `env:"MERIDIAN_MAIL_DIR"`
	SMTPAddr     string        `env:"MERIDIAN_SMTP_ADDR"`
	SMTPUsername string        `env:"MERIDIAN_SMTP_USERNAME"`
	SMTPPassword Secret        `env:"MERIDIAN_SMTP_PASSWORD"`
	SMTPTLS      string        `env:"MERIDIAN_SMTP_TLS" envDefault:"starttls"`
	SMTPTimeout  time.Duration `env:"MERIDIAN_SMTP_TIMEOUT" envDefault:"10s"`
	MailFrom     string        `env:"MERIDIAN_MAIL_FROM" envDefault:"8thDegree <no-reply@8thdegree.example>"`
	// VerifyEmailURL is the page a verification mail links to (?token= is appended); default
	// <MERIDIAN_PUBLIC_URL>/verify-email.
	VerifyEmailURL string `env:"MERIDIAN_VERIFY_EMAIL_URL"`

	CORSOrigins []string `env:"MERIDIAN_CORS_ORIGINS" envSeparator:","`
	// TrustedProxies are the addresses or networks of the edge routers, whose X-Forwarded-For names
	// the client. None by default: a node believes no X-Forwarded-For until its routers are named, so
	// that any other process that can reach it (on loopback or in its network) cannot pick the
	// address its per-IP limits, login throttles and audit log see.
	TrustedProxies []netip.Prefix `env:"MERIDIAN_TRUSTED_PROXIES"`

	// Rate limits per authenticated user and per client IP (anonymous requests), in requests per minute
	// with a burst; kept in the region's Redis (GCRA), per process while Redis is down.
	RateLimitUserPerMinute int `env:"MERIDIAN_RATE_LIMIT_USER_PER_MINUTE" envDefault:"600"`
	RateLimitUserBurst     int `env:"MERIDIAN_RATE_LIMIT_USER_BURST" envDefault:"100"`
	RateLimitIPPerMinute   int `env:"MERIDIAN_RATE_LIMIT_IP_PER_MINUTE" envDefault:"120"`
	RateLimitIPBurst       int `env:"MERIDIAN_RATE_LIMIT_IP_BURST" envDefault:"30"`

	// Free failed logins per account and per client address (an IPv6 /64) before each further failure
	// doubles the wait for the next attempt (1 s, 2 s, ... 15 min); successes cost nothing.
	LoginAccountFreeFailures int `env:"MERIDIAN_LOGIN_ACCOUNT_FREE_FAILURES" envDefault:"5"`
	LoginIPFreeFailures      int `env:"MERIDIAN_LOGIN_IP_FREE_FAILURES" envDefault:"30"`

	// FeatureAPIKeys enables API keys (the /auth/api-keys routes and "Authorization: ApiKey").
	FeatureAPIKeys bool `env:"MERIDIAN_FEATURE_API_KEYS" envDefault:"true"`
	// OAuth login is enabled per provider by configuring its client: MERIDIAN_OAUTH_GOOGLE_CLIENT_ID and
	// MERIDIAN_OAUTH_GOOGLE_CLIENT_SECRET (secret), and the same for GITHUB. The endpoints default to the
	// providers' own and can be pointed elsewhere (a stand-in provider, an enterprise GitHub).
	GoogleClientID     string `env:"MERIDIAN_OAUTH_GOOGLE_CLIENT_ID"`
	GoogleClientSecret Secret `env:"MERIDIAN_OAUTH_GOOGLE_CLIENT_SECRET"`
	GoogleAuthURL      string `env:"MERIDIAN_OAUTH_GOOGLE_AUTH_URL"`
	GoogleTokenURL     string `env:"MERIDIAN_OAUTH_GOOGLE_TOKEN_URL"`
	GoogleIssuer       string `env:"MERIDIAN_OAUTH_GOOGLE_ISSUER"`
	GoogleJWKSURL      string `env:"MERIDIAN_OAUTH_GOOGLE_JWKS_URL"`
	GitHubClientID     string `env:"MERIDIAN_OAUTH_GITHUB_CLIENT_ID"`
	GitHubClientSecret Secret `env:"MERIDIAN_OAUTH_GITHUB_CLIENT_SECRET"`
	GitHubAuthURL      string `env:"MERIDIAN_OAUTH_GITHUB_AUTH_URL"`
	GitHubTokenURL     string `env:"MERIDIAN_OAUTH_GITHUB_TOKEN_URL"`
	GitHubAPIBaseURL   string `env:"MERIDIAN_OAUTH_GITHUB_API_URL"`

	// The matching engine's embeddings: with an OpenAI key (any OpenAI-compatible server, through
	// MERIDIAN_OPENAI_BASE_URL), that model; without one, the local embedder (no network).
	OpenAIAPIKey     Secret `env:"MERIDIAN_OPENAI_API_KEY"`
	OpenAIBaseURL    string `env:"MERIDIAN_OPENAI_BASE_URL" envDefault:"https://api.openai.com/v1"`
	OpenAIModel      string `env:"MERIDIAN_OPENAI_MODEL" envDefault:"text-embedding-3-small"`
	OpenAIDims       int    `env:"MERIDIAN_OPENAI_DIMS"`
	OpenAIProvider   string `env:"MERIDIAN_OPENAI_PROVIDER" envDefault:"openai"`
	EmbedDims        int    `env:"MERIDIAN_EMBED_DIMS" envDefault:"384"`
	EmbedDailyTokens int    `env:"MERIDIAN_EMBED_DAILY_TOKENS" envDefault:"2000000"`
	// MatchingRerank turns on the fairness re-ranking of this region's matching lists.
	MatchingRerank bool `env:"MERIDIAN_MATCHING_RERANK" envDefault:"false"`

	// OTLPEndpoint, when set, exports traces over OTLP/HTTP (e.g. http://otel-collector:4318); without
	// it the node only passes the incoming traceparent on to its peer calls.
	OTLPEndpoint string `env:"MERIDIAN_OTLP_ENDPOINT"`
	// TraceSampleRatio is the share of new traces recorded; a trace the router or a client started
	// follows its parent's decision.
	TraceSampleRatio float64 `env:"MERIDIAN_TRACE_SAMPLE_RATIO" envDefault:"0.1"`

	// FreezeWait bounds how long a write to a frozen keyrange waits for its cutover.
	FreezeWait    time.Duration `env:"MERIDIAN_FREEZE_WAIT" envDefault:"2s"`
	ShutdownGrace time.Duration `env:"MERIDIAN_SHUTDOWN_GRACE" envDefault:"15s"`
	// StartTimeout bounds the wait for the first topology (from Consul or the disk copy) before the
	// node serves.
	StartTimeout time.Duration `env:"MERIDIAN_START_TIMEOUT" envDefault:"60s"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"MERIDIAN_LOG_LEVEL" envDefault:"info"`
}

// DefaultConfig returns the defaults of every setting (the envDefault of each field); the required
// ones (region, keys, secrets, TLS files) are empty.
func DefaultConfig() Config {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: map[string]string{}, FuncMap: envParsers}); err != nil {
		// The defaults are constants of this file; a test parses them.
		panic("api: bad default configuration: " + err.Error())
	}
	return c
}

// envParsers read what the env library cannot: a trusted proxy may be written as an address
// (10.0.0.5, one router) or as a network (10.0.0.0/24).
var envParsers = map[reflect.Type]env.ParserFunc{
	reflect.TypeOf([]netip.Prefix{}): func(v string) (any, error) {
		var out []netip.Prefix
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if a, err := netip.ParseAddr(part); err == nil {
				a = a.Unmap()
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("%q is neither an address nor a network (CIDR)", part)
			}
			out = append(out, p.Masked())
		}
		return out, nil
	},
}

// FromEnv reads the configuration from the environment. For each Secret, NAME_FILE may name a file
// holding it instead of NAME.
func FromEnv() (Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{FuncMap: envParsers}); err != nil {
		return c, namedEnvError(err)
	}
	for _, s := range []struct {
		name string
		dst  *Secret
	}{
		{"CONSUL_HTTP_TOKEN", &c.ConsulToken},
		{"MERIDIAN_EMAIL_PEPPER", &c.EmailPepper},
		{"MERIDIAN_OAUTH_STATE_KEY", &c.StateKey},
		{"MERIDIAN_OAUTH_GOOGLE_CLIENT_SECRET", &c.GoogleClientSecret},
		{"MERIDIAN_OAUTH_GITHUB_CLIENT_SECRET", &c.GitHubClientSecret},
		{"MERIDIAN_SMTP_PASSWORD", &c.SMTPPassword},
	} {
		path := os.Getenv(s.name + "_FILE")
		if path == "" {
			continue
		}
		if *s.dst != "" {
			return c, fmt.Errorf("%s and %s_FILE are both set; set one", s.name, s.name)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("%s_FILE: %w", s.name, err)
		}
		*s.dst = Secret(strings.TrimRight(string(b), "\r\n"))
	}
	return c, nil
}

// Validate checks every field and names the first bad one by its environment variable. It reads no
// files: New loads the region file and the keys, and names the variable when they are bad.
func (c Config) Validate() error {
	check := func(ok bool, field, msg string) error {
		if ok {
			return nil
		}
		return fmt.Errorf("config: %s %s", field, msg)
	}
	hostPort := func(s string) bool { _, _, err := net.SplitHostPort(s); return err == nil }
	for _, err := range []error{
		check(c.Region != "", "MERIDIAN_REGION", "is required (a region name of the topology, e.g. us-east)"),
		check(hostPort(c.Listen), "MERIDIAN_LISTEN", fmt.Sprintf("%q is not host:port", c.Listen)),
		check(c.AdvertiseAddr == "" || hostPort(c.AdvertiseAddr), "MERIDIAN_ADVERTISE_ADDR", fmt.Sprintf("%q is not host:port", c.AdvertiseAddr)),
		check(c.ConsulAddr != "", "CONSUL_HTTP_ADDR", "is required"),
		check(c.TopologyKey != "", "MERIDIAN_TOPOLOGY_KEY", "is required"),
		check(c.RedisAddr == "" || hostPort(c.RedisAddr), "MERIDIAN_REDIS_ADDR", fmt.Sprintf("%q is not host:port", c.RedisAddr)),
		check(c.TokenIssuer != "", "MERIDIAN_TOKEN_ISSUER", "is required"),
		check(c.EmbedDims >= 16 && c.EmbedDims <= 4096, "MERIDIAN_EMBED_DIMS", fmt.Sprintf("%d is not from 16 to 4096", c.EmbedDims)),
		check(c.EmbedDailyTokens >= 1, "MERIDIAN_EMBED_DAILY_TOKENS", "must be at least 1"),
		check(c.OpenAIDims >= 0, "MERIDIAN_OPENAI_DIMS", "must not be negative"),
		check(c.TokenAudience != "", "MERIDIAN_TOKEN_AUDIENCE", "is required"),
		// At most an hour: a stolen token is bounded by it even where revocation cannot reach (a
		// region that cannot be asked).
		check(c.AccessTTL >= time.Minute && c.AccessTTL <= time.Hour, "MERIDIAN_ACCESS_TTL", "must be between 1m and 1h"),
		check(c.RefreshTTL >= time.Hour, "MERIDIAN_REFRESH_TTL", "must be at least 1h"),
		check(c.SessionMaxAge >= c.RefreshTTL, "MERIDIAN_SESSION_MAX_AGE", "must be at least MERIDIAN_REFRESH_TTL"),
		check(c.SigningKeyDir != "", "MERIDIAN_SIGNING_KEY_DIR", "is required (a folder of Ed25519 *.pem keys)"),
		check(c.TLS == "on" || c.TLS == "off", "MERIDIAN_TLS", "must be on or off"),
		check(c.TLS != "on" || c.TLSCAFile != "", "MERIDIAN_TLS_CA_FILE", "is required with MERIDIAN_TLS=on (the CA bundle of routers' and nodes' certificates)"),
		check(c.TLS != "on" || c.TLSCertFile != "", "MERIDIAN_TLS_CERT_FILE", "is required with MERIDIAN_TLS=on (the node's certificate)"),
		check(c.TLS != "on" || c.TLSKeyFile != "", "MERIDIAN_TLS_KEY_FILE", "is required with MERIDIAN_TLS=on (the node's key)"),
		check(c.OpsListen == "" || hostPort(c.OpsListen), "MERIDIAN_OPS_LISTEN", fmt.Sprintf("%q is not host:port", c.OpsListen)),
		check(len(c.EmailPepper) >= 16, "MERIDIAN_EMAIL_PEPPER", "must be at least 16 characters"),
		check(len(c.StateKey) >= 16, "MERIDIAN_OAUTH_STATE_KEY", "must be at least 16 characters"),
		check(strings.HasPrefix(c.PublicURL, "http://") || strings.HasPrefix(c.PublicURL, "https://"), "MERIDIAN_PUBLIC_URL", "must be an http(s) URL"),
		check(c.OTLPEndpoint == "" || strings.HasPrefix(c.OTLPEndpoint, "http://") || strings.HasPrefix(c.OTLPEndpoint, "https://"), "MERIDIAN_OTLP_ENDPOINT", "must be an http(s) URL"),
		check(c.TraceSampleRatio >= 0 && c.TraceSampleRatio <= 1, "MERIDIAN_TRACE_SAMPLE_RATIO", "must be between 0 and 1"),
		check(c.FreezeWait > 0 && c.FreezeWait <= time.Minute, "MERIDIAN_FREEZE_WAIT", "must be between 0 and 1m"),
		check(c.ShutdownGrace > 0, "MERIDIAN_SHUTDOWN_GRACE", "must be positive"),
		check(c.StartTimeout > 0, "MERIDIAN_START_TIMEOUT", "must be positive"),
		check(c.RateLimitUserPerMinute > 0, "MERIDIAN_RATE_LIMIT_USER_PER_MINUTE", "must be positive"),
		check(c.RateLimitUserBurst > 0, "MERIDIAN_RATE_LIMIT_USER_BURST", "must be positive"),
		check(c.RateLimitIPPerMinute > 0, "MERIDIAN_RATE_LIMIT_IP_PER_MINUTE", "must be positive"),
		check(c.RateLimitIPBurst > 0, "MERIDIAN_RATE_LIMIT_IP_BURST", "must be positive"),
		check(c.LoginAccountFreeFailures >= 0, "MERIDIAN_LOGIN_ACCOUNT_FREE_FAILURES", "must not be negative"),
		check(c.LoginIPFreeFailures >= 0, "MERIDIAN_LOGIN_IP_FREE_FAILURES", "must not be negative"),
		check(map[string]bool{"debug": true, "info": true, "warn": true, "error": true}[c.LogLevel], "MERIDIAN_LOG_LEVEL", "must be debug, info, warn or error"),
	} {
		if err != nil {
			return err
		}
	}
	switch {
	case (c.MailDir == "") == (c.SMTPAddr == ""):
		return errors.New("config: set one of MERIDIAN_SMTP_ADDR (an SMTP submission server) and MERIDIAN_MAIL_DIR (a folder for .eml files)")
	case c.SMTPAddr != "" && !hostPort(c.SMTPAddr):
		return fmt.Errorf("config: MERIDIAN_SMTP_ADDR %q is not host:port", c.SMTPAddr)
	case c.SMTPTLS != string(mailer.STARTTLS) && c.SMTPTLS != string(mailer.ImplicitTLS) && c.SMTPTLS != string(mailer.NoTLS):
		return fmt.Errorf("config: MERIDIAN_SMTP_TLS must be starttls, tls or none, got %q", c.SMTPTLS)
	case c.SMTPTimeout <= 0:
		return errors.New("config: MERIDIAN_SMTP_TIMEOUT must be positive")
	case c.SMTPPassword != "" && c.SMTPUsername == "":
		return errors.New("config: MERIDIAN_SMTP_PASSWORD needs MERIDIAN_SMTP_USERNAME")
	case c.VerifyEmailURL != "" && !strings.HasPrefix(c.VerifyEmailURL, "http://") && !strings.HasPrefix(c.VerifyEmailURL, "https://"):
		return errors.New("config: MERIDIAN_VERIFY_EMAIL_URL must be an http(s) URL")
	}
	if (c.GoogleClientID == "") != (c.GoogleClientSecret == "") {
		return errors.New("config: MERIDIAN_OAUTH_GOOGLE_CLIENT_ID and MERIDIAN_OAUTH_GOOGLE_CLIENT_SECRET go together")
	}
	if (c.GitHubClientID == "") != (c.GitHubClientSecret == "") {
		return errors.New("config: MERIDIAN_OAUTH_GITHUB_CLIENT_ID and MERIDIAN_OAUTH_GITHUB_CLIENT_SECRET go together")
	}
	return nil
}

// rateLimits returns the configured per-user and per-IP budgets.
func (c Config) rateLimits() (user, ip ratelimit.Limit) {
	return ratelimit.Limit{Rate: c.RateLimitUserPerMinute, Period: time.Minute, Burst: c.RateLimitUserBurst},
		ratelimit.Limit{Rate: c.RateLimitIPPerMinute, Period: time.Minute, Burst: c.RateLimitIPBurst}
}

// mailer returns the configured Mailer: SMTP, or the mail folder.
func (c Config) mailer() (mailer.Mailer, error) {
	if c.MailDir != "" {
		return mailer.NewDir(c.MailDir, c.MailFrom)
	}
	return mailer.NewSMTP(mailer.SMTPConfig{
		Addr: c.SMTPAddr, Username: c.SMTPUsername, Password: string(c.SMTPPassword),
		TLS: mailer.TLSMode(c.SMTPTLS), From: c.MailFrom, Timeout: c.SMTPTimeout,
	})
}

// oauthProviders returns the configured OAuth providers, production endpoints unless overridden.
func (c Config) oauthProviders() (map[string]oauth.ProviderConfig, error) {
	out := map[string]oauth.ProviderConfig{}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	if c.GoogleClientID != "" {
		p := oauth.GoogleProvider(c.GoogleClientID, string(c.GoogleClientSecret))
		set(&p.AuthURL, c.GoogleAuthURL)
		set(&p.TokenURL, c.GoogleTokenURL)
		set(&p.Issuer, c.GoogleIssuer)
		set(&p.JWKSURL, c.GoogleJWKSURL)
		out[oauth.ProviderGoogle] = p
	}
	if c.GitHubClientID != "" {
		p := oauth.GitHubProvider(c.GitHubClientID, string(c.GitHubClientSecret))
		set(&p.AuthURL, c.GitHubAuthURL)
		set(&p.TokenURL, c.GitHubTokenURL)
		set(&p.APIBaseURL, c.GitHubAPIBaseURL)
		out[oauth.ProviderGitHub] = p
	}
	return out, nil
}

// namedEnvError rewrites the env library's parse errors, which name Go fields, to name the variables.
func namedEnvError(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeOf(Config{})
	var msgs []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
				msgs = append(msgs, fmt.Sprintf("config: %s: %v", name, pe.Err))
				continue
			}
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}

// verifierLeeway is the clock skew the node's token verifier tolerates.
const verifierLeeway = 30 * time.Second

var errNoTopology = errors.New("no topology: neither Consul nor the disk copy had one")

// embedder returns the matching engine's embedder: OpenAI's (or a compatible server's) when a key is
// configured, with the shared circuit breaker and the region's daily token budget in Redis; the local
// embedder otherwise.
func (c Config) embedder(a *feature.Deps, bm *breaker.Metrics) (embed.Embedder, error) {
	if c.OpenAIAPIKey == "" {
		return embed.NewLocal(c.EmbedDims), nil
	}
	oc := embed.DefaultOpenAIConfig()
	oc.APIKey, oc.BaseURL, oc.Model, oc.Dims, oc.Provider = string(c.OpenAIAPIKey), c.OpenAIBaseURL, c.OpenAIModel, c.OpenAIDims, c.OpenAIProvider
	br, err := breaker.New(breaker.DefaultConfig("embeddings"), a.Log, bm)
	if err != nil {
		return nil, err
	}
	return embed.NewOpenAI(oc, br, embed.NewRedisBudget(a.Redis, c.Region, c.EmbedDailyTokens, time.Now))
}
