package headers

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"testing"
)

func TestSanitize(t *testing.T) {
	h := http.Header{
		"Connection":               {"keep-alive, X-Listed"},
		"X-Listed":                 {"1"},
		"Keep-Alive":               {"timeout=5"},
		"Te":                       {"trailers"},
		"Upgrade":                  {"websocket"},
		"Proxy-Authorization":      {"Basic x"},
		"X-Forwarded-For":          {"1.2.3.4"},
		"Forwarded":                {"for=1.2.3.4"},
		"X-Request-Id":             {"mine"},
		"Traceparent":              {"x"},
		"X-Meridian-Internal":      {"secret"},
		"X-Meridian-Anything":      {"x"},
		"X-Meridian-Replayed-From": {"x"},
		"Authorization":            {"Bearer t"},
		"Content-Type":             {"application/json"},
		"X-Meridiana":              {"not ours: kept"},
	}
	Sanitize(h)
	for k := range h {
		switch k {
		case "Authorization", "Content-Type", "X-Meridiana":
		default:
			t.Errorf("%s survived", k)
		}
	}
	if len(h) != 3 {
		t.Errorf("kept %v", h)
	}
}

func TestClientOf(t *testing.T) {
	trust := Trust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	cases := []struct {
		name       string
		trust      Trust
		remote     string
		xff        []string
		proto      string
		tls        bool
		wantIP     string
		wantProto  string
		wantLimKey string
	}{
		{"peer", Trust{}, "203.0.113.9:4000", []string{"6.6.6.6"}, "https", false, "203.0.113.9", "http", "203.0.113.9"},
		{"tls", Trust{}, "203.0.113.9:4000", nil, "", true, "203.0.113.9", "https", "203.0.113.9"},
		{"untrusted peer's xff ignored", trust, "203.0.113.9:4000", []string{"6.6.6.6"}, "https", false, "203.0.113.9", "http", "203.0.113.9"},
		{"trusted peer", trust, "10.0.0.2:4000", []string{"6.6.6.6, 198.51.100.1"}, "https", false, "198.51.100.1", "https", "198.51.100.1"},
		{"trusted chain", trust, "10.0.0.2:4000", []string{"6.6.6.6, 198.51.100.1", "10.9.9.9"}, "", false, "198.51.100.1", "http", "198.51.100.1"},
		{"garbage hop", trust, "10.0.0.2:4000", []string{"6.6.6.6, junk, 10.1.1.1"}, "", false, "10.1.1.1", "http", "10.1.1.1"},
		{"ipv6 per /64", Trust{}, "[2001:db8:1:2:3:4:5:6]:443", nil, "", false, "2001:db8:1:2:3:4:5:6", "http", "2001:db8:1:2::/64"},
		{"mapped v4", Trust{}, "[::ffff:192.0.2.1]:80", nil, "", false, "192.0.2.1", "http", "192.0.2.1"},
	}
	for _, c := range cases {
		r, _ := http.NewRequest(http.MethodGet, "http://router.example/api/v1/users/me", nil)
		r.RemoteAddr = c.remote
		if c.xff != nil {
			r.Header["X-Forwarded-For"] = c.xff
		}
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		got := c.trust.ClientOf(r)
		if got.IP.String() != c.wantIP || got.Proto != c.wantProto || got.LimitKey() != c.wantLimKey || got.Host != "router.example" {
			t.Errorf("%s: got %+v (limit key %s)", c.name, got, got.LimitKey())
		}
	}
}

func TestCopyResponse(t *testing.T) {
	src := http.Header{
		"Content-Type":             {"application/json"},
		"Connection":               {"close, X-Hop"},
		"X-Hop":                    {"1"},
		"Transfer-Encoding":        {"chunked"},
		"X-Meridian-Replay-Region": {"eu-west"},
		"X-Meridian-Key-Verified":  {"key_x"},
		"X-Meridian-Region":        {"us-east"},
	}
	dst := http.Header{"X-Request-Id": {"r"}}
	CopyResponse(dst, src)
	want := map[string]bool{"Content-Type": true, "X-Meridian-Region": true, "X-Request-Id": true}
	for k := range dst {
		if !want[k] {
			t.Errorf("%s copied", k)
		}
	}
	if len(dst) != len(want) {
		t.Errorf("got %v", dst)
	}
}

func BenchmarkSanitize(b *testing.B) {
	b.ReportAllocs()
	base := http.Header{"Authorization": {"Bearer t"}, "Accept": {"*/*"}, "User-Agent": {"x"}, "X-Forwarded-For": {"1.2.3.4"}}
	for b.Loop() {
		h := http.Header{}
		for k, v := range base {
			h[k] = v
		}
		Sanitize(h)
	}
}
