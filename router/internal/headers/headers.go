// Package headers enforces what may cross the edge in request headers. Everything a client could use
// to pass as someone or somewhere else is removed and, where the API nodes rely on it, set again from
// what the router itself observed: X-Forwarded-For/-Proto/-Host from the connection, X-Request-ID
// generated here (never the client's), and no X-Meridian-* header at all (the node-to-node secret,
// replay markers and any identity header are the router's and the nodes' alone). Hop-by-hop headers
// (RFC 9110 section 7.6.1) are removed in both directions, as every proxy must.
package headers

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
)

// Canonical header keys the router reads or writes.
const (
	RequestID      = "X-Request-Id"
	ForwardedFor   = "X-Forwarded-For"
	ForwardedProto = "X-Forwarded-Proto"
	ForwardedHost  = "X-Forwarded-Host"
	// Region is the region that served a response.
	Region = "X-Meridian-Region"
	// ReplayRegion is the node's replay hint on a 421 (app.ReplayHeader on the node).
	ReplayRegion = "X-Meridian-Replay-Region"
	// Replayed marks a request the router replays in the region a node named: the loop guard. Its value
	// is the region that sent the hint.
	Replayed = "X-Meridian-Replayed-From"
	// meridianPrefix starts every internal header; none may come from a client.
	meridianPrefix = "X-Meridian-"
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
	case ForwardedFor, ForwardedProto, ForwardedHost, "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server",
		"Forwarded", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip", RequestID, "Traceparent", "Tracestate",
		// The router reads the whole body before it forwards anything: a node has nothing to
		// continue.
		"Expect":
		return true
	}
	return len(k) > len(meridianPrefix) && strings.EqualFold(k[:len(meridianPrefix)], meridianPrefix)
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

func (t Trust) trusted(a netip.Addr) bool {
	for _, p := range t.Proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientOf derives the client from r. The client IP is the peer's address, or, when the peer is a
// trusted proxy, the rightmost address of X-Forwarded-For that is not a trusted proxy (the leftmost
// ones are whatever the client claimed). It must run before Sanitize removes the header.
func (t Trust) ClientOf(r *http.Request) Client {
	c := Client{Proto: "http", Host: r.Host}
	if r.TLS != nil {
		c.Proto = "https"
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		c.IP = peer.Addr().Unmap()
	} else if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		c.IP = a.Unmap()
	}
	if len(t.Proxies) == 0 || !c.IP.IsValid() || !t.trusted(c.IP) {
		return c
	}
	if p := r.Header.Get(ForwardedProto); p == "https" || p == "http" {
		c.Proto = p
	}
	xff := r.Header.Values(ForwardedFor)
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
				return c // garbage: stop at the last hop we could read
			}
			c.IP = a.Unmap()
			if !t.trusted(c.IP) {
				return c
			}
		}
	}
	return c
}

// LimitKey is the address rate limits count by: the IP, or its /64 for IPv6, since one IPv6 client
// holds a whole /64 and could otherwise rotate through it.
func (c Client) LimitKey() string {
	if !c.IP.IsValid() {
		return "unknown"
	}
	if c.IP.Is6() {
		p, _ := c.IP.Prefix(64)
		return p.String()
	}
	return c.IP.String()
}

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
		h[ForwardedFor] = []string{c.IP.String()}
	}
	h[ForwardedProto] = []string{c.Proto}
	if c.Host != "" {
		h[ForwardedHost] = []string{c.Host}
	}
}

// CopyResponse copies an upstream response's headers into dst, without hop-by-hop headers (and those
// the response's Connection header names) and without the replay hint, which is for the router alone.
// The value slices are shared, not copied: the upstream response is not used afterwards.
func CopyResponse(dst, src http.Header) {
	for k, vv := range src {
		if hopByHop(k) || k == ReplayRegion {
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

// NewRequestID returns 24 hex characters of fresh randomness from the runtime's per-thread ChaCha8
// generator: unique with overwhelming probability, unguessable, and without a system call.
func NewRequestID() string {
	var raw [12]byte
	a, b := rand.Uint64(), rand.Uint32()
	for i := 0; i < 8; i++ {
		raw[i] = byte(a >> (8 * i))
	}
	for i := 0; i < 4; i++ {
		raw[8+i] = byte(b >> (8 * i))
	}
	var out [24]byte
	hex.Encode(out[:], raw[:])
	return string(out[:])
}
