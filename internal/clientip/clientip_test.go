package clientip

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, c := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct client", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"direct client cannot forge", "203.0.113.7:5000", []string{"1.2.3.4"}, "203.0.113.7"},
		{"behind the router", "10.0.0.5:4000", []string{"198.51.100.9"}, "198.51.100.9"},
		{"client prepends a lie", "10.0.0.5:4000", []string{"1.2.3.4, 198.51.100.9"}, "198.51.100.9"},
		{"two proxies", "10.0.0.5:4000", []string{"198.51.100.9, 10.1.1.1"}, "198.51.100.9"},
		{"split header", "10.0.0.5:4000", []string{"198.51.100.9", "10.1.1.1"}, "198.51.100.9"},
		{"garbage hop stops the walk", "10.0.0.5:4000", []string{"198.51.100.9, nonsense, 10.1.1.1"}, "10.1.1.1"},
		{"all trusted", "10.0.0.5:4000", []string{"10.2.2.2"}, "10.2.2.2"},
		{"no header from a proxy", "10.0.0.5:4000", nil, "10.0.0.5"},
		{"IPv6", "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"IPv4 in IPv6", "[::ffff:203.0.113.7]:443", nil, "203.0.113.7"},
		{"IPv6 behind an IPv6 proxy", "[fd00::1]:443", []string{"2001:db8::5"}, "2001:db8::5"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := Of(r, trusted).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "not an address"
	if got := Of(r, nil); got.IsValid() {
		t.Errorf("bad RemoteAddr gave %s", got)
	}
}

func TestLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":             "203.0.113.7",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9999": "2001:db8:1:2::/64",
	} {
		if got := LimitKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("LimitKey(%s) = %s, want %s", in, got, want)
		}
	}
	if LimitKey(netip.Addr{}) != "unknown" {
		t.Error("the zero address")
	}
}
