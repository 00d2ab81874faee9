package router

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/ratelimit"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Region, c.ConsulAddr, c.TokenIssuer, c.TokenAudience = "eu-west", "127.0.0.1:8500", "iss", "aud"
	c.TLS = mtls.Files{CA: "ca.pem", Cert: "router.pem", Key: "router-key.pem"}
	return c
}

func TestValidateNamesTheField(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"Region", func(c *Config) { c.Region = "" }},
		{"TLS", func(c *Config) { c.TLS.Key = "" }},
		{"ConsulAddr", func(c *Config) { c.ConsulAddr = "" }},
		{"TopologyKey", func(c *Config) { c.TopologyKey = "" }},
		{"TokenIssuer", func(c *Config) { c.TokenIssuer = "" }},
		{"TokenAudience", func(c *Config) { c.TokenAudience = "" }},
		{"TokenLeeway", func(c *Config) { c.TokenLeeway = -time.Second }},
		{"JWKSPath", func(c *Config) { c.JWKSPath = "jwks.json" }},
		{"MaxBodyBytes", func(c *Config) { c.MaxBodyBytes = 0 }},
		{"MaxIdleConnsPerNode", func(c *Config) { c.MaxIdleConnsPerNode = 0 }},
		{"MaxAttempts", func(c *Config) { c.MaxAttempts = 9 }},
		{"EjectAfter", func(c *Config) { c.EjectAfter = 0 }},
		{"EjectMax", func(c *Config) { c.EjectMax = time.Millisecond }},
		{"BreakerFailures", func(c *Config) { c.BreakerFailures = 0 }},
		{"RegionRetryAfter", func(c *Config) { c.RegionRetryAfter = 0 }},
		{"MaxHeaderBytes", func(c *Config) { c.MaxHeaderBytes = 10 }},
		{"UpstreamTimeout", func(c *Config) { c.UpstreamTimeout = 0 }},
		{"ShutdownTimeout", func(c *Config) { c.ShutdownTimeout = 0 }},
		{"IPLimit", func(c *Config) { c.IPLimit = ratelimit.Limit{Rate: 1, Period: time.Second} }},
		{"PrincipalLimit", func(c *Config) { c.PrincipalLimit = ratelimit.Limit{Rate: 0, Period: time.Second, Burst: 1} }},
		{"TrustedProxies", func(c *Config) { c.TrustedProxies = []netip.Prefix{{}} }},
	}
	for _, tc := range cases {
		c := validConfig()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
	c := validConfig()
	c.IPLimit, c.PrincipalLimit = ratelimit.Limit{}, ratelimit.Limit{}
	if err := c.Validate(); err != nil {
		t.Errorf("limits off: %v", err)
	}
}

func TestParseLimit(t *testing.T) {
	cases := []struct {
		in   string
		want ratelimit.Limit
		err  bool
	}{
		{"600/1m,300", ratelimit.Limit{Rate: 600, Period: time.Minute, Burst: 300}, false},
		{"10/1s", ratelimit.Limit{Rate: 10, Period: time.Second, Burst: 10}, false},
		{" 5 / 1h , 2 ", ratelimit.Limit{Rate: 5, Period: time.Hour, Burst: 2}, false},
		{"600/1m0s,300", ratelimit.Limit{Rate: 600, Period: time.Minute, Burst: 300}, false},
		{"off", ratelimit.Limit{}, false},
		{"", ratelimit.Limit{}, false},
		{"600", ratelimit.Limit{}, true},
		{"x/1m", ratelimit.Limit{}, true},
		{"6/soon", ratelimit.Limit{}, true},
		{"6/1m,none", ratelimit.Limit{}, true},
		{"0/1m", ratelimit.Limit{}, true},
		{"5/1m,0", ratelimit.Limit{}, true},
	}
	for _, c := range cases {
		got, err := ParseLimit(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseLimit(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func FuzzParseLimit(f *testing.F) {
	f.Add("600/1m,300")
	f.Add("off")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLimit(s)
		if err == nil && l != (ratelimit.Limit{}) && l.Validate() != nil {
			t.Fatalf("ParseLimit(%q) = %+v, an invalid limit", s, l)
		}
	})
}
