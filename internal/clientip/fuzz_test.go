package clientip

import (
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// Of parses a header anyone can write: it must never panic, and must answer either the
// connection's peer or an address that appears in X-Forwarded-For.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.5:4000", "198.51.100.9, 10.1.1.1")
	f.Add("10.0.0.5:4000", "garbage,,, ::1")
	f.Add("[fd00::1]:443", "2001:db8::5")
	f.Add("203.0.113.7:1", "")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := Of(r, trusted)
		if !got.IsValid() {
			return
		}
		candidates := strings.Split(xff, ",")
		candidates = append(candidates, remote)
		if host, _, err := net.SplitHostPort(remote); err == nil {
			candidates = append(candidates, host)
		}
		for _, c := range candidates {
			if a, err := netip.ParseAddr(strings.TrimSpace(c)); err == nil && a.Unmap() == got {
				return
			}
		}
		t.Fatalf("ClientIP(%q, %q) = %s, which is neither the peer nor a forwarded hop", remote, xff, got)
	})
}
