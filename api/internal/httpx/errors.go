package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// RetryAfter, when set, is sent as the Retry-After header (seconds, rounded up).
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

func RateLimited(retry time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many requests; retry later", RetryAfter: retry}
}

func RegionUnavailable(region string, retry time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "region_unavailable", Message: "the home region " + region + " is unavailable; retry later", RetryAfter: retry}
}

func Unavailable(msg string, retry time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msg, RetryAfter: retry}
}

func MethodNotAllowed() *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed on this path"}
}

// Public turns any error into the Error that is shown to the client. Errors that are not *Error become
// a 500 (or 499/504 for a client that left or a deadline that passed) with a generic message.
func Public(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Status: StatusClientClosedRequest, Code: "client_closed_request", Message: "the client closed the request", Cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Code: "timeout", Message: "the request took too long", Cause: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Cause: err}
}

type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	RequestID string            `json:"request_id,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
}

// WriteError is the one place where an error becomes a response. Server errors are logged with their
// cause; client errors are not (the access log has them).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := Public(err)
	rid := RequestID(r.Context())
	if e.Status >= 500 {
		Logger(r.Context()).Error("request failed", "status", e.Status, "code", e.Code, "err", err)
	}
	h := w.Header()
	for k, vs := range e.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	WriteJSON(w, e.Status, errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, RequestID: rid, Fields: e.Fields}})
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	loggerKey
)

// WithRequestID stores the request ID in ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestID returns the request ID stored by the request-ID middleware.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithLogger stores a request-scoped logger in ctx.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey, l)
}

// Logger returns the request-scoped logger, or the default one.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
