// Package headers enforces what may cross the edge in request headers. Everything a client could use
// to pass as someone or somewhere else is removed and, where the API nodes rely on it, set again from
// what the router itself observed: X-Forwarded-For/-Proto/-Host from the connection, X-Request-ID
// generated here (never the client's), and no X-Meridian-* header at all (the node-to-node secret,
// replay markers and any identity header are the router's and the nodes' alone). Hop-by-hop headers
// (RFC 9110 section 7.6.1) are removed in both directions, as every proxy must.
package headers

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/8thdegree/meridian/internal/clientip"
	"github.com/8thdegree/meridian/internal/wire"
)

// hopByHop reports whether k (canonical) is a hop-by-hop header, or one a proxy must not pass on.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// spoofable reports whether a client-sent header k (canonical) must be dropped: the router sets its
// own value, or nobody but the router and the nodes may.
func spoofable(k string) bool {
	switch k {
	case wire.ForwardedFor, wire.ForwardedProto, wire.ForwardedHost, "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server",
		"Forwarded", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip", wire.RequestID, "Traceparent", "Tracestate",
		// The router reads the whole body before it forwards anything: a node has nothing to
		// continue.
		"Expect":
		return true
	}
	return len(k) > len(wire.InternalPrefix) && strings.EqualFold(k[:len(wire.InternalPrefix)], wire.InternalPrefix)
}

// Client is what the router learnt about the client from the connection.
type Client struct {
	IP    netip.Addr
	Proto string // "http" or "https"
	Host  string
}

// Trust says which peers are proxies of ours (a load balancer in front of the router): their
// X-Forwarded-For and X-Forwarded-Proto are believed. Nobody else's are.
type Trust struct {
	Proxies []netip.Prefix
}

// ClientOf derives the client from r. The client IP is the peer's address, or, when the peer is a
// trusted proxy, the rightmost address of X-Forwarded-For that is not a trusted proxy (the leftmost
// ones are whatever the client claimed). It must run before Sanitize removes the header.
func (t Trust) ClientOf(r *http.Request) Client {
	c := Client{Proto: "http", Host: r.Host}
	if r.TLS != nil {
		c.Proto = "https"
	}
	c.IP = clientip.Of(r, t.Proxies)
	if p := r.Header.Get(wire.ForwardedProto); (p == "https" || p == "http") && clientip.Trusted(peerAddr(r), t.Proxies) {
		c.Proto = p
	}
	return c
}

func peerAddr(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(r.RemoteAddr)
	return a.Unmap()
}

// LimitKey is the address rate limits count by: the IP, or its /64 for IPv6, since one IPv6 client
// holds a whole /64 and could otherwise rotate through it.
func (c Client) LimitKey() string { return clientip.LimitKey(c.IP) }

// Sanitize removes, in place, every header a client must not send upstream: hop-by-hop headers and
// those named in Connection, forwarding and request-ID headers, trace context (the router sets its
// own), and every X-Meridian-* header. The request is the router's own copy, so editing it in place
// spares a clone of the header map on every request.
func Sanitize(h http.Header) {
	if c := h["Connection"]; len(c) > 0 {
		for _, v := range c {
			for _, tok := range strings.Split(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" {
					delete(h, http.CanonicalHeaderKey(tok))
				}
			}
		}
	}
	for k := range h {
		if hopByHop(k) || spoofable(k) {
			delete(h, k)
		}
	}
}

// SetForwarded sets the X-Forwarded-* headers from c.
func SetForwarded(h http.Header, c Client) {
	if c.IP.IsValid() {
		h[wire.ForwardedFor] = []string{c.IP.String()}
	}
	h[wire.ForwardedProto] = []string{c.Proto}
	if c.Host != "" {
		h[wire.ForwardedHost] = []string{c.Host}
	}
}

// CopyResponse copies an upstream response's headers into dst, without hop-by-hop headers (and those
// the response's Connection header names) and without the replay hint and the verified-key mark,
// which are for the router alone.
// The value slices are shared, not copied: the upstream response is not used afterwards.
func CopyResponse(dst, src http.Header) {
	for k, vv := range src {
		if hopByHop(k) || k == wire.ReplayRegion || k == wire.KeyVerified || k == wire.TokenRevoked {
			continue
		}
		dst[k] = vv
	}
	for _, v := range src["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				delete(dst, http.CanonicalHeaderKey(tok))
			}
		}
	}
}
