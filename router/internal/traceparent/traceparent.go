// Package traceparent continues or starts a W3C Trace Context (https://www.w3.org/TR/trace-context/)
// at the edge. The router is one hop of the trace: it keeps the client's trace ID when the client sent a
// valid traceparent, gives its own hop a new parent (span) ID, and starts a new trace otherwise. It
// does not record spans itself; nodes do (OpenTelemetry), under the IDs the router passes on.
package traceparent

import (
	"encoding/hex"
	"math/rand/v2"
)

// Header names.
const (
	Header      = "Traceparent"
	StateHeader = "Tracestate"
)

// Context is a parsed traceparent.
type Context struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

const (
	// length is the length of a version-00 traceparent: 2+1+32+1+16+1+2.
	length = 55
	// FlagSampled is the sampled bit of the trace flags.
	FlagSampled = 0x01
)

// Parse reads a traceparent header value. Version 00 must be exactly 55 characters; a higher version may
// carry more after a dash, which is ignored (the spec's forward compatibility rule). Version ff, all-zero
// IDs, uppercase hex and malformed values are refused.
func Parse(s string) (Context, bool) {
	var c Context
	if len(s) < length || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return c, false
	}
	ver, ok := hexByte(s[0:2])
	if !ok || ver == 0xff || (ver == 0 && len(s) != length) || (ver != 0 && len(s) > length && s[length] != '-') {
		return c, false
	}
	if !lowerHex(s[3:35], c.TraceID[:]) || !lowerHex(s[36:52], c.SpanID[:]) {
		return c, false
	}
	if c.TraceID == ([16]byte{}) || c.SpanID == ([8]byte{}) {
		return c, false
	}
	if c.Flags, ok = hexByte(s[53:55]); !ok {
		return c, false
	}
	return c, true
}

// Next returns the traceparent the router sends upstream: the incoming trace continued with a new span
// ID when incoming is valid (continued is true), else a new sampled trace. The random source is the
// runtime's ChaCha8 generator: unpredictable, cheap, and with no shared state to contend on.
func Next(incoming string) (out Context, continued bool) {
	c, ok := Parse(incoming)
	if !ok {
		c = Context{Flags: FlagSampled}
		fill(c.TraceID[:])
	}
	fill(c.SpanID[:])
	// Only the sampled flag is defined for version 00; others are cleared as the spec asks.
	c.Flags &= FlagSampled
	return c, ok
}

// String renders the version-00 form.
func (c Context) String() string {
	var b [length]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], c.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], c.SpanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{c.Flags})
	return string(b[:])
}

// TraceIDString is the trace ID in hex, for logs.
func (c Context) TraceIDString() string { return hex.EncodeToString(c.TraceID[:]) }

func fill(b []byte) {
	for {
		for i := 0; i < len(b); i += 8 {
			v := rand.Uint64()
			for j := i; j < len(b) && j < i+8; j++ {
				b[j] = byte(v)
				v >>= 8
			}
		}
		for _, x := range b {
			if x != 0 {
				return
			}
		}
	}
}

func hexByte(s string) (byte, bool) {
	var b [1]byte
	if !lowerHex(s, b[:]) {
		return 0, false
	}
	return b[0], true
}

// lowerHex decodes lowercase hex into dst (len(s) == 2*len(dst)); the spec forbids uppercase.
func lowerHex(s string, dst []byte) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := nibble(s[2*i])
		lo, ok2 := nibble(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
