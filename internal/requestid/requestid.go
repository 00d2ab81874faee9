// Package requestid is the request ID every response carries (X-Request-ID): the edge router makes
// one for each request it takes and forwards it; an API node keeps the router's when it trusts its
// caller and the ID is well-formed, and makes its own otherwise. Both write it to their access logs
// and into error bodies, so one ID follows a request across hops.
package requestid

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"net/http"

	"github.com/8thdegree/meridian/internal/wire"
)

// New returns 24 hex characters of fresh randomness from the runtime's per-thread ChaCha8
// generator: unique with overwhelming probability, unguessable, and without a system call.
func New() string {
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

// Valid reports whether id may be taken from a trusted caller: 1-64 characters of [A-Za-z0-9._-],
// so it cannot break a log line or a header.
func Valid(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

type ctxKey struct{}

// With stores id in ctx.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the request ID stored in ctx, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// Middleware takes the incoming request ID when trustIncoming and it is Valid, else makes one; it
// echoes the ID in the response and stores it in the request's context.
func Middleware(trustIncoming bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(wire.RequestID)
			if !trustIncoming || !Valid(id) {
				id = New()
			}
			w.Header().Set(wire.RequestID, id)
			next.ServeHTTP(w, r.WithContext(With(r.Context(), id)))
		})
	}
}
