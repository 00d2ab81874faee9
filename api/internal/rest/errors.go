package rest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/requestid"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// WriteError is where a handler's error becomes a response on the node. Server errors are logged
// with their cause; client errors are not (the access log has them).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := Public(err)
	if e.Status >= 500 {
		Logger(r.Context()).Error("request failed", "status", e.Status, "code", e.Code, "err", err)
	}
	apierror.Write(w, e, requestid.From(r.Context()))
}

// Public is the public face of a handler's error on the node: an *apierror.Error in its chain as is
// (a handler that knows better, "user not found", wraps the routing error in its own), the shard
// manager's routing errors as the contract has them, anything else as apierror.Public says.
func Public(err error) *apierror.Error {
	var e *apierror.Error
	if errors.As(err, &e) {
		return e
	}
	if e := routingError(err); e != nil {
		return e
	}
	return apierror.Public(err)
}

// ShardRetryAfter is the Retry-After of a shard that could not be reached: long enough for a restart
// or a failover to finish, short enough that a client does not wait past it.
const ShardRetryAfter = 2 * time.Second

// routingError maps shardpool's errors (ReadShard, WriteShard): data homed elsewhere is 421 with
// the replay hint the router follows; a keyrange frozen past the hold, or a node with no topology
// yet, is a 503 that a client may retry in a second; a ksid no keyrange covers names no object; a
// shard that cannot be reached or dropped the connection (shardpool.Unavailable) is 503
// shard_unavailable, never 500.
func routingError(err error) *apierror.Error {
	var wr *shardpool.WrongRegionError
	switch {
	case errors.As(err, &wr):
		return &apierror.Error{Status: http.StatusMisdirectedRequest, Code: "wrong_region",
			Message: "the data is homed in region " + wr.Region, Header: http.Header{wire.ReplayRegion: {wr.Region}}, Cause: err}
	case errors.Is(err, shardpool.ErrFrozen):
		return apierror.Unavailable("the data is being moved; retry shortly", time.Second).WithCause(err)
	case errors.Is(err, shardpool.ErrNoTopology):
		return apierror.Unavailable("the node has no topology yet", time.Second).WithCause(err)
	case errors.Is(err, topology.ErrNoShard):
		return apierror.NotFound("object").WithCause(err)
	case shardpool.Unavailable(err):
		return &apierror.Error{Status: http.StatusServiceUnavailable, Code: "shard_unavailable",
			Message: "a database shard is unavailable; retry shortly", RetryAfter: ShardRetryAfter, Cause: err}
	}
	return nil
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
