// Package clientip finds the address of the client behind a request, and the identity per-IP rate
// limits count by. The edge router and the API nodes both use it: the router behind a load balancer
// of ours, the nodes behind the routers.
package clientip

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/8thdegree/meridian/internal/wire"
)

// Of returns the address of the client that sent r. It is the peer's address, or, when the peer is
// in trusted (a proxy of ours), the rightmost address of X-Forwarded-For that is not trusted: a
// client can prepend what it likes to that header, but not forge what the proxies appended. A hop
// that does not parse was not written by a trusted proxy, so the last good one is the client. The
// zero Addr means RemoteAddr itself did not parse. Of allocates nothing.
func Of(r *http.Request, trusted []netip.Prefix) netip.Addr {
	var ip netip.Addr
	if peer, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ip = peer.Addr().Unmap()
	} else if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		ip = a.Unmap()
	}
	if len(trusted) == 0 || !ip.IsValid() || !Trusted(ip, trusted) {
		return ip
	}
	xff := r.Header.Values(wire.ForwardedFor)
	for i := len(xff) - 1; i >= 0; i-- {
		hops := xff[i]
		for hops != "" {
			var hop string
			if j := strings.LastIndexByte(hops, ','); j >= 0 {
				hop, hops = hops[j+1:], hops[:j]
			} else {
				hop, hops = hops, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
				return ip
			}
			ip = a.Unmap()
			if !Trusted(ip, trusted) {
				return ip
			}
		}
	}
	return ip
}

// Trusted reports whether a is inside one of the prefixes.
func Trusted(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// LimitKey is the identity per-IP limits count by: the address, or its /64 for IPv6, since one IPv6
// subscriber usually holds a whole /64 and could otherwise rotate through it.
func LimitKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
