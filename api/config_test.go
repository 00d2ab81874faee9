package api

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/mtls/mtlstest"
	"github.com/8thdegree/meridian/internal/tokenissue"
)

func validConfig(t *testing.T) Config {
	t.Helper()
	tf := mtlstest.New(t).Files(t, mtls.Node("eu-west", "eu-west-1"))
	for k, v := range map[string]string{
		"MERIDIAN_REGION":          "eu-west",
		"MERIDIAN_SIGNING_KEY_DIR": t.TempDir(),
		"MERIDIAN_TLS_CA_FILE":     tf.CA,
		"MERIDIAN_TLS_CERT_FILE":   tf.Cert,
		"MERIDIAN_TLS_KEY_FILE":    tf.Key,
		"MERIDIAN_OPS_LISTEN":      "127.0.0.1:0",
		"MERIDIAN_EMAIL_PEPPER":    "0123456789abcdef-pepper",
		"MERIDIAN_OAUTH_STATE_KEY": "0123456789abcdef-state",
		"MERIDIAN_SMTP_ADDR":       "smtp.example.com:587",
	} {
		t.Setenv(k, v)
	}
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	return c
}

func TestConfigValidateNamesTheField(t *testing.T) {
	cases := map[string]func(*Config){
		"MERIDIAN_REGION":           func(c *Config) { c.Region = "" },
		"MERIDIAN_LISTEN":           func(c *Config) { c.Listen = "8080" },
		"MERIDIAN_ADVERTISE_ADDR":   func(c *Config) { c.AdvertiseAddr = "nope" },
		"MERIDIAN_REDIS_ADDR":       func(c *Config) { c.RedisAddr = "redis" },
		"MERIDIAN_ACCESS_TTL":       func(c *Config) { c.AccessTTL = time.Second },
		"MERIDIAN_REFRESH_TTL":      func(c *Config) { c.RefreshTTL = time.Minute },
		"MERIDIAN_SIGNING_KEY_DIR":  func(c *Config) { c.SigningKeyDir = "" },
		"MERIDIAN_TLS":              func(c *Config) { c.TLS = "maybe" },
		"MERIDIAN_TLS_CERT_FILE":    func(c *Config) { c.TLSCertFile = "" },
		"MERIDIAN_OPS_LISTEN":       func(c *Config) { c.OpsListen = "9090" },
		"MERIDIAN_EMAIL_PEPPER":     func(c *Config) { c.EmailPepper = "" },
		"MERIDIAN_OAUTH_STATE_KEY":  func(c *Config) { c.StateKey = "x" },
		"MERIDIAN_PUBLIC_URL":       func(c *Config) { c.PublicURL = "ftp://x" },
		"MERIDIAN_FREEZE_WAIT":      func(c *Config) { c.FreezeWait = 0 },
		"MERIDIAN_LOG_LEVEL":        func(c *Config) { c.LogLevel = "loud" },
		"MERIDIAN_START_TIMEOUT":    func(c *Config) { c.StartTimeout = 0 },
		"MERIDIAN_SMTP_ADDR":        func(c *Config) { c.SMTPAddr = "" },
		"MERIDIAN_MAIL_DIR":         func(c *Config) { c.MailDir = "/var/mail/meridian" },
		"MERIDIAN_SMTP_TLS":         func(c *Config) { c.SMTPTLS = "ssl" },
		"MERIDIAN_SMTP_TIMEOUT":     func(c *Config) { c.SMTPTimeout = 0 },
		"MERIDIAN_SMTP_USERNAME":    func(c *Config) { c.SMTPPassword = "p" },
		"MERIDIAN_VERIFY_EMAIL_URL": func(c *Config) { c.VerifyEmailURL = "mailto:x" },
	}
	for field, mutate := range cases {
		c := validConfig(t)
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

// Validate reads no files; New reads the region file and names it when it is bad.
func TestNewChecksTheRegionFile(t *testing.T) {
	c := validConfig(t)
	k, err := tokenissue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := tokenissue.WriteKeyFile(filepath.Join(c.SigningKeyDir, "k.pem"), k); err != nil {
		t.Fatal(err)
	}
	c.RegionFile = "/nonexistent.yaml"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate read the region file: %v", err)
	}
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "MERIDIAN_REGION_FILE") {
		t.Errorf("missing region file: %v", err)
	}
	c.RegionFile = filepath.Join("..", "deploy", "regions", "us-east.yaml")
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "not MERIDIAN_REGION=eu-west") {
		t.Errorf("region file of another region: %v", err)
	}
	c.RegionFile = filepath.Join("..", "deploy", "regions", "eu-west.yaml")
	n, err := New(c, nil)
	if err != nil {
		t.Fatalf("matching region file: %v", err)
	}
	// New builds and connects to nothing; the background tasks are named.
	want := []string{"topology", "shard_pools", "peer_nodes", "rate_limits"}
	if got := n.Tasks(); !slices.Equal(got[:min(len(got), len(want))], want) {
		t.Errorf("tasks %v, want %v first", got, want)
	}
}

// No X-Forwarded-For is believed until the routers are named; they may be named by address or network.
func TestTrustedProxies(t *testing.T) {
	if d := DefaultConfig(); len(d.TrustedProxies) != 0 {
		t.Errorf("trusted by default: %v", d.TrustedProxies)
	}
	t.Setenv("MERIDIAN_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16,::ffff:10.2.0.1,fd00::7")
	c := validConfig(t)
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.1/32"), netip.MustParsePrefix("fd00::7/128")}
	if !slices.Equal(c.TrustedProxies, want) {
		t.Errorf("parsed %v, want %v", c.TrustedProxies, want)
	}
	t.Setenv("MERIDIAN_TRUSTED_PROXIES", "router.local")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MERIDIAN_TRUSTED_PROXIES") {
		t.Errorf("a host name: %v", err)
	}
}

func TestDefaultConfig(t *testing.T) {
	d := DefaultConfig()
	if d.Listen != "127.0.0.1:8080" || d.FreezeWait != 2*time.Second || d.StartTimeout != time.Minute || len(d.TrustedProxies) != 0 || !d.RegisterService {
		t.Fatalf("defaults: %+v", d)
	}
	// The defaults and the required settings make a valid configuration.
	d.Region, d.SigningKeyDir = "eu-west", t.TempDir()
	d.EmailPepper, d.StateKey = "0123456789abcdef-pepper", "0123456789abcdef-state"
	d.TLSCAFile, d.TLSCertFile, d.TLSKeyFile = "ca.pem", "node.pem", "node-key.pem"
	d.SMTPAddr = "smtp.example.com:587"
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.TLS != "on" {
		t.Errorf("TLS defaults to %q, want on", d.TLS)
	}
	if e := validConfig(t); e.Listen != d.Listen || e.RefreshTTL != d.RefreshTTL || e.RateLimitIPBurst != d.RateLimitIPBurst {
		t.Errorf("FromEnv with nothing set differs from DefaultConfig: %+v vs %+v", e, d)
	}
}

func TestConfigSecretsFromFiles(t *testing.T) {
	validConfig(t)
	p := filepath.Join(t.TempDir(), "pepper")
	if err := os.WriteFile(p, []byte("pepper-from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MERIDIAN_EMAIL_PEPPER", "")
	t.Setenv("MERIDIAN_EMAIL_PEPPER_FILE", p)
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.EmailPepper != "pepper-from-a-file-0123456789" {
		t.Fatalf("pepper = %q", string(c.EmailPepper))
	}
	if s := fmt.Sprintf("%v %s", c.EmailPepper, c.StateKey); strings.Contains(s, "pepper") || strings.Contains(s, "state") {
		t.Fatalf("a secret printed in clear: %s", s)
	}
	t.Setenv("MERIDIAN_EMAIL_PEPPER", "also-set-in-env-0123456789")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("both env and file: %v", err)
	}
	t.Setenv("MERIDIAN_EMAIL_PEPPER", "")
	t.Setenv("MERIDIAN_EMAIL_PEPPER_FILE", "/nonexistent")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MERIDIAN_EMAIL_PEPPER_FILE") {
		t.Fatalf("missing file: %v", err)
	}
	t.Setenv("MERIDIAN_EMAIL_PEPPER_FILE", "")
	// The Consul token comes from CONSUL_HTTP_TOKEN_FILE, as consul/api names it, and is never printed.
	tok := filepath.Join(t.TempDir(), "node.token")
	if err := os.WriteFile(tok, []byte("6b7e1c4e-3f0a-4c3e-9a55-0d5f3c2b1a90\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", tok)
	if c, err := FromEnv(); err != nil || c.ConsulToken != "6b7e1c4e-3f0a-4c3e-9a55-0d5f3c2b1a90" || strings.Contains(fmt.Sprint(c.ConsulToken), "6b7e") {
		t.Fatalf("consul token from a file: %v, %v", c.ConsulToken, err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	t.Setenv("MERIDIAN_ACCESS_TTL", "soon")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MERIDIAN_ACCESS_TTL") {
		t.Fatalf("bad duration: %v", err)
	}
}
