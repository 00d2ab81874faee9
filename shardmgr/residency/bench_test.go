package residency

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// BenchmarkAudit measures the audit's rows per second on one shard against a plain count(*) of
// the same tables in the same snapshot mode, in the same run, so the ratio is what the rules cost:
//
//	go test -run NONE -bench Audit -benchtime 5x ./shardmgr/residency/
//
// The shard holds benchRows audit-log rows of its own keyrange; the "relocations" variant runs
// against a topology with 1,000 relocations of us-east users (those inside the shard's keyranges
// are probed through the primary key).
func BenchmarkAudit(b *testing.B) {
	const benchRows = 300_000
	c := newCluster(b)
	ctx := context.Background()
	// 300k rows in us-east-1's keyrange (20-2080): region byte 20, next byte below 80.
	c.exec(b, "us-east-1", `INSERT INTO core.audit_log (ksid, id, action)
		SELECT '\x20'::bytea || set_byte(substring(sha256(i::text::bytea) from 1 for 7), 0, get_byte(sha256(i::text::bytea), 0) & 127),
		       substring(sha256(('id' || i)::bytea) from 1 for 20), 'bench.row'
		  FROM generate_series(1, $1) AS i`, benchRows)
	c.exec(b, "us-east-1", `VACUUM ANALYZE core.audit_log`)
	tg, err := c.pools.Shard("us-east-1")
	if err != nil {
		b.Fatal(err)
	}
	relocated := c.topo.Clone()
	for i := range 1000 {
		from := shardkey.NewKeyspaceID(0x20, fmt.Appendf(nil, "r%d", i)) // about half in us-east-1: probed by primary key
		relocated.Relocations = append(relocated.Relocations, topology.Relocation{From: from, To: from.WithRegion(0x40)})
	}

	var countRate float64
	b.Run("count", func(b *testing.B) {
		var rows int64
		start := time.Now()
		for b.Loop() {
			rows = 0
			tx, err := tg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
			if err != nil {
				b.Fatal(err)
			}
			tables, err := catalog(ctx, tx)
			if err != nil {
				b.Fatal(err)
			}
			for _, tb := range tables {
				var n int64
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+tb.ident()).Scan(&n); err != nil {
					b.Fatal(err)
				}
				rows += n
			}
			_ = tx.Rollback(ctx)
		}
		countRate = float64(rows) * float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(countRate, "rows/s")
	})
	for _, v := range []struct {
		name string
		topo *topology.Topology
	}{{"audit", c.topo}, {"audit-relocations", relocated}} {
		b.Run(v.name, func(b *testing.B) {
			var rows int64
			start := time.Now()
			for b.Loop() {
				tables, err := auditShard(ctx, mustCompile(b, v.topo), tg, 20)
				if err != nil {
					b.Fatal(err)
				}
				rows = 0
				for _, tr := range tables {
					rows += tr.Rows
					if tr.Violations != 0 {
						b.Fatalf("%s: %d violations", tr.Table, tr.Violations)
					}
				}
			}
			if rows != benchRows {
				b.Fatalf("audited %d rows, want %d", rows, benchRows)
			}
			rate := float64(rows) * float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(rate, "rows/s")
			if countRate > 0 {
				b.ReportMetric(rate/countRate, "x-count")
			}
		})
	}
}

func mustCompile(tb testing.TB, t *topology.Topology) *topology.Table {
	tb.Helper()
	tab, err := topology.Compile(t)
	if err != nil {
		tb.Fatal(err)
	}
	return tab
}
