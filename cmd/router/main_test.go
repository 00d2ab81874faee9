package main

import (
	"strings"
	"testing"
)

// Bad flags fail at start with a message that names them; nothing is contacted.
func TestBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "Region is required"},
		{[]string{"-region", "eu-west", "-ip-limit", "lots"}, "-ip-limit"},
		{[]string{"-region", "eu-west", "-principal-limit", "5/1h,0"}, "-principal-limit"},
		{[]string{"-region", "eu-west", "-trusted-proxies", "10.0.0.0/33"}, "-trusted-proxies"},
		{[]string{"-region", "eu-west", "-log-level", "loud"}, "-log-level"},
		{[]string{"-region", "eu-west", "-max-attempts", "0"}, "MaxAttempts"},
		{[]string{"-region", "eu-west", "-token-issuer", ""}, "TokenIssuer"},
		{[]string{"-region", "eu-west", "-tls", "off", "-max-buffered", "1024"}, "MaxBufferedBytes"},
		{[]string{"-region", "eu-west", "-tls", "off", "-body-timeout", "0s"}, "BodyReadTimeout"},
		{[]string{"-region", "eu-west", "-tls", "off", "-header-timeout", "0s"}, "ReadHeaderTimeout"},
		{[]string{"-no-such-flag"}, "no-such-flag"},
		// The ops endpoints are on the ops listener only: there is no switch to put them on the public one.
		{[]string{"-region", "eu-west", "-ops-on-public"}, "ops-on-public"},
		{[]string{"-region", "eu-west", "-tls", "maybe"}, "-tls"},
		{[]string{"-region", "eu-west"}, "Config.TLS"},
		{[]string{"-region", "eu-west", "-tls-ca", "/nonexistent/ca.pem", "-tls-cert", "/nonexistent/r.pem", "-tls-key", "/nonexistent/r-key.pem"}, "Config.TLS"},
	}
	for _, c := range cases {
		err := run(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run(%q) = %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
