package middleware

import (
	"net/http"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
)

// BodyLimit caps every request body at limit bytes (rest.MaxBodyBytes in the node). A request that
// declares a larger Content-Length gets a 413 JSON error before any handler runs; a body that turns out
// larger while being read (chunked) fails the read, which rest.Decode reports as 413.
func BodyLimit(limit int64) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				// The body stays unread: close the connection rather than drain it.
				w.Header().Set("Connection", "close")
				rest.WriteError(w, r, apierror.TooLarge(limit))
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, limit)
			}
			next.ServeHTTP(w, r)
		})
	}
}
