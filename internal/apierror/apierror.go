// Package apierror is the API contract's error, shared by the edge router and the API nodes: a
// failure with a public face (status, snake_case code, message safe to show, field problems, headers)
// kept apart from its private cause, which is logged and never sent. Write is the one place where
// an error becomes a response body, {"error": {"code", "message", "request_id", "fields"}}.
//
// Packages below the HTTP edge return their own sentinel errors; the edge of each component maps
// them to an *Error once (etcd's v3rpc/util.go, Tailscale's tsweb.HTTPError).
package apierror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// StatusClientClosedRequest is the status logged when the client went away (nginx's 499).
const StatusClientClosedRequest = 499

// Error is an error with a public face: status, machine code and a message safe to show. Cause is the
// private reason, logged and never sent.
type Error struct {
	Status  int
	Code    string
	Message string
	// Fields maps a request field (JSON name, dotted for nesting) to what is wrong with it.
	Fields map[string]string
	// Details is what the client needs to act on the error (a link token), safe to show.
	Details map[string]any
	// RetryAfter, when positive, is sent as Retry-After in whole seconds (rounded up, at least 1).
	RetryAfter time.Duration
	// Header holds extra response headers (a replay hint, rate-limit state).
	Header http.Header
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// WithCause returns a copy of e that records the private cause.
func (e *Error) WithCause(err error) *Error {
	c := *e
	c.Cause = err
	return &c
}

// Constructors for the API contract's errors.

func BadRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: msg}
}

// Invalid reports field-level validation errors.
func Invalid(fields map[string]string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "the request has invalid fields", Fields: fields}
}

func Unauthenticated(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: msg}
}

func Forbidden(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: msg}
}

// NotFound is also the answer for another user's private object: its existence is not disclosed.
func NotFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: what + " not found"}
}

func Conflict(code, msg string) *Error {
	if code == "" {
		code = "conflict"
	}
	return &Error{Status: http.StatusConflict, Code: code, Message: msg}
}

func TooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large", Message: fmt.Sprintf("the request body is larger than %d bytes", limit)}
}

func UnsupportedMediaType() *Error {
	return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "the request body must be application/json"}
}

func MethodNotAllowed() *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed on this path"}
}

func RateLimited(retry time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many requests; retry later", RetryAfter: retry}
}

// RegionUnavailable is the answer when the caller's home region has no node to serve it. Nobody
// serves a user's data from another region instead.
func RegionUnavailable(region string, retry time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "region_unavailable", Message: "the home region " + region + " is unavailable; retry later", RetryAfter: retry}
}

// Unavailable is a 503 for a dependency that is down or not ready yet (no topology, no token keys).
func Unavailable(msg string, retry time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msg, RetryAfter: retry}
}

// Timeout is a request whose own deadline passed while it was being served.
func Timeout() *Error {
	return &Error{Status: http.StatusGatewayTimeout, Code: "timeout", Message: "the request took too long"}
}

// RequestTimeout is a client that did not send its request body in time.
func RequestTimeout() *Error {
	return &Error{Status: http.StatusRequestTimeout, Code: "request_timeout", Message: "the request body did not arrive in time"}
}

// BadGateway is an upstream (the API node behind the router) that failed to answer properly.
func BadGateway() *Error {
	return &Error{Status: http.StatusBadGateway, Code: "bad_gateway", Message: "the API node failed to answer; retry later"}
}

// GatewayTimeout is an upstream (the API node behind the router) that did not answer in time. It is
// not Timeout: the proxy gave up waiting for another process, which a client may retry elsewhere.
func GatewayTimeout() *Error {
	return &Error{Status: http.StatusGatewayTimeout, Code: "gateway_timeout", Message: "the API node did not answer in time"}
}

// ClientClosed is logged for a client that went away; nobody reads the body.
func ClientClosed() *Error {
	return &Error{Status: StatusClientClosedRequest, Code: "client_closed_request", Message: "the client closed the request"}
}

// Public turns any error into the Error shown to the client: an *Error in its chain as is, a
// cancelled context as 499, a deadline as 504 Timeout, anything else as a 500 with a generic message.
func Public(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		return ClientClosed().WithCause(err)
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout().WithCause(err)
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Cause: err}
}

type body struct {
	Error payload `json:"error"`
}

type payload struct {
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	RequestID string            `json:"request_id,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
	Details   map[string]any    `json:"details,omitempty"`
}

// Write sends err as the contract's JSON error and returns the public Error (for the access log).
// Headers already set on w (request ID, region) are kept; the Error's own headers replace any of the
// same name. A 499 gets a body too, although its client has usually gone: the status is mostly for
// the access log.
func Write(w http.ResponseWriter, err error, requestID string) *Error {
	e := Public(err)
	h := w.Header()
	for k, vs := range e.Header {
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(max(int64((e.RetryAfter+time.Second-1)/time.Second), 1), 10))
	}
	b, mErr := json.Marshal(body{Error: payload{Code: e.Code, Message: e.Message, RequestID: requestID, Fields: e.Fields, Details: e.Details}})
	if mErr != nil {
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	b = append(b, '\n')
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
	return e
}
