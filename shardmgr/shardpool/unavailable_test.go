package shardpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local/testenv"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// TestUnavailableRecognisesRealOutages produces each outage for real, against the test PostgreSQL or
// a closed port, and checks Unavailable says so; query errors and the request's own context do not.
func TestUnavailableRecognisesRealOutages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t).NewDatabase(t)

	// Refused: a shard pointed at a closed port.
	refused, err := pgxpool.New(ctx, fmt.Sprintf("postgres://meridian@127.0.0.1:%d/x?sslmode=disable&connect_timeout=2", closedPort(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	_, refusedErr := refused.Exec(ctx, "SELECT 1")

	// Closed pool: a shard retired from the topology while a request still held its target.
	closed, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	_, closedErr := closed.Exec(ctx, "SELECT 1")

	// Admin shutdown: the server ends the backend (what a fast shutdown does to every session).
	victim, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close(context.Background())
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", victim.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	_, terminatedErr := victim.Exec(ctx, "SELECT 1")
	// And the connection pgx closed after that.
	_, afterErr := victim.Exec(ctx, "SELECT 1")

	// Not outages: a query error, the request's deadline, a cancelled request.
	_, queryErr := admin.Exec(ctx, "SELECT * FROM no_such_table")
	short, stop := context.WithTimeout(ctx, time.Millisecond)
	defer stop()
	_, deadlineErr := admin.Exec(short, "SELECT pg_sleep(1)")
	gone, cancelGone := context.WithCancel(ctx)
	cancelGone()
	_, cancelledErr := refused.Exec(gone, "SELECT 1")

	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refusedErr, true},
		{"closed pool", closedErr, true},
		{"terminated backend", terminatedErr, true},
		{"connection closed by pgx", afterErr, true},
		{"wrapped", fmt.Errorf("jobs: create: %w", refusedErr), true},
		{"manager closed", ErrClosed, true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, true},
		{"query error", queryErr, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"request deadline", deadlineErr, false},
		{"request cancelled", cancelledErr, false},
		{"other", errors.New("something else"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if (c.err == nil) != (c.name == "nil") {
			t.Errorf("%s: no error produced", c.name)
			continue
		}
		if got := Unavailable(c.err); got != c.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
