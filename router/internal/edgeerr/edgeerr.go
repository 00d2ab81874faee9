// Package edgeerr is the one place where the router's own failures become responses, in the API
// contract's shape: {"error": {"code", "message", "request_id"}}. An Error keeps the public face
// (status, code, message, headers) apart from the private cause, which is logged and never sent.
package edgeerr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// StatusClientClosedRequest is logged when the client went away before the answer (nginx's 499).
const StatusClientClosedRequest = 499

// Error is a failure with a public face.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as Retry-After in whole seconds (rounded up, at least 1).
	RetryAfter time.Duration
	// Header holds extra response headers (rate-limit state).
	Header http.Header
	// Cause is the private reason: logged, never sent.
	Cause error
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

// Constructors for the failures the edge answers itself.

func NotFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: what + " not found"}
}

func Unauthenticated(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: msg}
}

func TooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
		Message: fmt.Sprintf("the request body is larger than %d bytes", limit)}
}

func BadRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: msg}
}

func RateLimited(retry time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many requests; retry later", RetryAfter: retry}
}

// RegionUnavailable is the answer when the caller's home region has no node to serve it. The router
// never serves a user's data from another region instead.
func RegionUnavailable(region string, retry time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "region_unavailable",
		Message: "the home region " + region + " is unavailable; retry later", RetryAfter: retry}
}

// Unavailable is a 503 for the router itself not being ready (no topology, no token keys yet).
func Unavailable(msg string, retry time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msg, RetryAfter: retry}
}

// BadGateway is a node that failed to answer properly.
func BadGateway() *Error {
	return &Error{Status: http.StatusBadGateway, Code: "bad_gateway", Message: "the API node failed to answer; retry later"}
}

// GatewayTimeout is a node that did not answer in time.
func GatewayTimeout() *Error {
	return &Error{Status: http.StatusGatewayTimeout, Code: "gateway_timeout", Message: "the API node did not answer in time"}
}

// ClientClosed is logged for a client that went away; nobody reads the body.
func ClientClosed() *Error {
	return &Error{Status: StatusClientClosedRequest, Code: "client_closed_request", Message: "the client closed the request"}
}

// Public turns any error into the Error shown to the client: *Error as is, a cancelled context as
// 499, a deadline as 504, anything else as a 500 with a generic message.
func Public(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		return ClientClosed().WithCause(err)
	case errors.Is(err, context.DeadlineExceeded):
		return GatewayTimeout().WithCause(err)
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Cause: err}
}

type body struct {
	Error payload `json:"error"`
}

type payload struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// Write sends err as the contract's JSON error and returns the public Error (for the access log).
// Headers already set on w (request ID, region) are kept.
func Write(w http.ResponseWriter, err error, requestID string) *Error {
	e := Public(err)
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(max(int64((e.RetryAfter+time.Second-1)/time.Second), 1), 10))
	}
	if e.Status == StatusClientClosedRequest {
		// Nobody is listening; the status is for the access log only.
		return e
	}
	b, _ := json.Marshal(body{Error: payload{Code: e.Code, Message: e.Message, RequestID: requestID}})
	b = append(b, '\n')
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
	return e
}
