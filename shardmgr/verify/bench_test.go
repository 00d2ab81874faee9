package verify_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/shardmgr/verify"
)

// BenchmarkCompare measures Compare over 100,000 equal rows against a baseline taken in the same
// run: a COPY of the same rows out of both sides at once, the least any comparison has to read. Read
// the ratio (x_copy: Compare's time over the COPY's), not the absolute rates, on a shared machine.
//
//	go test -run '^$' -bench Compare -benchtime 5x ./shardmgr/verify/
func BenchmarkCompare(b *testing.B) {
	const rows = 100_000
	p := newPair(b)
	ctx := context.Background()
	for _, pl := range []*pgxpool.Pool{p.src, p.tgt} {
		exec(b, pl, `INSERT INTO core.audit_log (ksid, id, at, actor_id, action, target, ip, user_agent, details)
			SELECT decode('2001' || lpad(to_hex(g / 4), 12, '0'), 'hex'), decode(lpad(to_hex(g), 40, '0'), 'hex'),
			       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', decode(lpad(to_hex(g % 977), 40, '0'), 'hex'),
			       'job.update', 'job ' || g, '192.0.2.1', 'Mozilla/5.0 (X11; Linux x86_64)', jsonb_build_object('field', 'title', 'n', g)
			  FROM generate_series(1, $1::int) g`, rows)
		exec(b, pl, `VACUUM ANALYZE core.audit_log`)
	}
	kr := slotRange(1)
	opts := verify.Options{Tables: []string{"core.audit_log"}}
	copySQL := `COPY (SELECT * FROM core.audit_log WHERE ksid >= '\x2001000000000000' AND ksid < '\x2002000000000000') TO STDOUT`
	copyBoth := func() error {
		errs := make(chan error, 2)
		for _, pl := range []*pgxpool.Pool{p.src, p.tgt} {
			go func() {
				c, err := pl.Acquire(ctx)
				if err != nil {
					errs <- err
					return
				}
				defer c.Release()
				_, err = c.Conn().PgConn().CopyTo(ctx, io.Discard, copySQL)
				errs <- err
			}()
		}
		return errorsOf(errs, 2)
	}
	var copyTime, compareTime time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := copyBoth(); err != nil {
			b.Fatal(err)
		}
		copyTime += time.Since(start)
		start = time.Now()
		rep, err := verify.Compare(ctx, p.src, p.tgt, kr, opts)
		if err != nil {
			b.Fatal(err)
		}
		compareTime += time.Since(start)
		if !rep.Equal() || rep.Tables[0].SourceRows != rows {
			b.Fatalf("%+v", rep)
		}
	}
	b.ReportMetric(float64(rows*b.N)/compareTime.Seconds(), "compare_rows/s")
	b.ReportMetric(float64(rows*b.N)/copyTime.Seconds(), "copy_rows/s")
	b.ReportMetric(compareTime.Seconds()/copyTime.Seconds(), "x_copy")
}

func errorsOf(ch <-chan error, n int) error {
	var first error
	for range n {
		if err := <-ch; err != nil && first == nil {
			first = err
		}
	}
	return first
}
