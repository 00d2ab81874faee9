package rest

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/requestid"
)

// WriteError is where a handler's error becomes a response on the node. Server errors are logged
// with their cause; client errors are not (the access log has them).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := apierror.Public(err)
	if e.Status >= 500 {
		Logger(r.Context()).Error("request failed", "status", e.Status, "code", e.Code, "err", err)
	}
	apierror.Write(w, e, requestid.From(r.Context()))
}

type loggerKey struct{}

// WithLogger stores a request-scoped logger in ctx.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// Logger returns the request-scoped logger, or the default one.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
