package shardpool

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// SQLSTATEs that mean the server is going away or not accepting connections, not that the query was
// wrong: class 08 (connection exception), 57P01 admin_shutdown, 57P02 crash_shutdown,
// 57P03 cannot_connect_now (starting up or shutting down), 53300 too_many_connections.
var unavailableStates = map[string]bool{
	"57P01": true, "57P02": true, "57P03": true, "53300": true,
}

// Unavailable reports whether err is a failure to reach a shard, not a failure of the query itself:
// a connection attempt that failed (pgconn.ConnectError: refused, no route, DNS, authentication
// timeout), a connection the server or the network dropped (reset, broken pipe, unexpected EOF, a
// closed pgx connection), a closed pool (the shard left the topology or the process is stopping),
// a server shutting down (SQLSTATE 57P01, 57P02, 57P03, class 08, 53300), or the manager's own
// ErrClosed. A cancelled request (its client went away) is never unavailability, and a query's own
// deadline is not either unless it ran out while connecting: the API node answers those 499 and 504.
//
// Every query error of the API node passes through here once, at its HTTP edge, so that a shard
// that is down answers 503 with Retry-After instead of 500.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return unavailableStates[pe.Code] || (len(pe.Code) == 5 && pe.Code[:2] == "08")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
