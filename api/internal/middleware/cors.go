package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/cors"

	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/wire"
)

// CORSConfig says which browser origins may call the API.
type CORSConfig struct {
	// AllowedOrigins are exact origins ("https://app.8thdegree.example"), origins with one wildcard
	// ("https://*.8thdegree.example") or "*" for any. Empty turns CORS off: no CORS headers at all.
	AllowedOrigins []string
	AllowedMethods []string
	// AllowedHeaders are the request headers a page may send (Authorization for tokens and API keys).
	AllowedHeaders []string
	// ExposedHeaders are the response headers a page may read.
	ExposedHeaders []string
	// AllowCredentials lets pages send cookies. The API authenticates with the Authorization header,
	// which needs no credentials mode, so it is off by default; it cannot go with "*".
	AllowCredentials bool
	// MaxAge is how long browsers may cache a preflight answer.
	MaxAge time.Duration
}

// DefaultCORSConfig returns the API's methods and headers, with no origin allowed yet.
func DefaultCORSConfig() CORSConfig {
	return CORSConfig{
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		AllowedHeaders: []string{"Authorization", "Content-Type", "Accept", wire.RequestID, "traceparent", "tracestate"},
		ExposedHeaders: []string{wire.RequestID, wire.Region,
			ratelimit.HeaderLimit, ratelimit.HeaderRemaining, ratelimit.HeaderReset, ratelimit.HeaderPolicy, ratelimit.HeaderRetryAfter},
		MaxAge: 10 * time.Minute,
	}
}

// Validate names the first bad origin or setting.
func (c CORSConfig) Validate() error {
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			if c.AllowCredentials {
				return errors.New("cors: AllowedOrigins \"*\" cannot go with AllowCredentials")
			}
			continue
		}
		if strings.Count(o, "*") > 1 {
			return fmt.Errorf("cors: origin %q has more than one wildcard", o)
		}
		u, err := url.Parse(strings.Replace(o, "*", "wildcard", 1))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("cors: origin %q is not scheme://host[:port]", o)
		}
	}
	if c.MaxAge < 0 {
		return errors.New("cors: MaxAge must not be negative")
	}
	return nil
}

// CORS answers preflight requests (204) from allowed origins and adds the CORS headers to their actual
// requests. It belongs in server.Options.Middleware, outside routing, since preflights match no route.
func CORS(cfg CORSConfig) (Middleware, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.AllowedOrigins) == 0 {
		// rs/cors reads an empty list as "every origin"; here it means CORS is off.
		return func(next http.Handler) http.Handler { return next }, nil
	}
	origins := make([]string, len(cfg.AllowedOrigins))
	for i, o := range cfg.AllowedOrigins {
		origins[i] = strings.TrimSuffix(o, "/")
	}
	c := cors.New(cors.Options{
		AllowedOrigins:   origins,
		AllowedMethods:   cfg.AllowedMethods,
		AllowedHeaders:   cfg.AllowedHeaders,
		ExposedHeaders:   cfg.ExposedHeaders,
		AllowCredentials: cfg.AllowCredentials,
		MaxAge:           int(cfg.MaxAge / time.Second),
	})
	return c.Handler, nil
}
