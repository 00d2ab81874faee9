// Package collect measures what the planner (shardmgr/plan) needs, per keyrange assignment: rows over
// every sharded table (auth, core, ai), bytes apportioned by rows, the row-count median, and requests
// counted by the region's API nodes. `shardmgr plan` and `shardmgr rebalance` call it; the planner itself
// does no I/O.
//
// Each shard is read in one read-only REPEATABLE READ transaction, so its counts and medians agree with
// one another. The cost is one count per table (a scan of its primary-key index) and, per keyrange, an
// ordered walk of half its rows through those indexes (the median is the row at OFFSET rows/2 of the
// union of every sharded table's ksids): fine for an operator's command, not for a hot loop.
package collect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/plan"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// ErrShards is wrapped when some shard could not be measured; the plan needs every one.
var ErrShards = errors.New("collect: shards not measured")

// RequestCounter returns the requests the API nodes served per keyrange assignment of t. `shardmgr plan`
// adapts shardmgr/load.Collect (the nodes' per-keyrange counters) to it; NoRequests balances by rows alone.
type RequestCounter interface {
	Requests(ctx context.Context, t *topology.Topology) (map[shardkey.KeyRange]int64, error)
}

// NoRequests counts nothing: every keyrange has zero requests.
type NoRequests struct{}

// Requests implements RequestCounter.
func (NoRequests) Requests(context.Context, *topology.Topology) (map[shardkey.KeyRange]int64, error) {
	return nil, nil
}

var _ RequestCounter = NoRequests{}

// Options tune a collection. The zero value measures every region with no request counts.
type Options struct {
	// Region limits the measure to one region's shards; empty measures all.
	Region string
	// Concurrency is the most shards read at once; 0 means 4.
	Concurrency int
	// PerShardTimeout bounds each shard's reads; 0 leaves only ctx's deadline.
	PerShardTimeout time.Duration
	// Requests counts requests; nil means NoRequests.
	Requests RequestCounter
}

// Collect measures every assignment of t on the shards of targets (a shardpool.Manager's Targets for
// t). It fails, naming the shards, unless every shard of the region (or every region) answered.
func Collect(ctx context.Context, t *topology.Topology, targets []shardpool.Target, opts Options) ([]plan.Stats, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Requests == nil {
		opts.Requests = NoRequests{}
	}
	var chosen []shardpool.Target
	for _, tg := range targets {
		if opts.Region == "" || tg.Region == opts.Region {
			chosen = append(chosen, tg)
		}
	}
	for _, s := range t.Shards {
		if opts.Region != "" && s.Region != opts.Region {
			continue
		}
		found := false
		for _, tg := range chosen {
			found = found || tg.Shard == s.Name
		}
		if !found {
			return nil, fmt.Errorf("%w: no connection to shard %s", ErrShards, s.Name)
		}
	}
	res := shardpool.Scatter(ctx, chosen, shardpool.ScatterOptions{Concurrency: opts.Concurrency, PerShardTimeout: opts.PerShardTimeout},
		func(ctx context.Context, tg shardpool.Target) ([]plan.Stats, error) {
			return measureShard(ctx, tg, t.RangesOf(tg.Shard), true)
		})
	if res.Partial() {
		errs := make([]error, len(res.Failed))
		for i, f := range res.Failed {
			errs[i] = f
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrShards, strings.Join(res.FailedShards(), ", "), errors.Join(errs...))
	}
	req, err := opts.Requests.Requests(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("collect: request counts: %w", err)
	}
	var out []plan.Stats
	for _, v := range res.Values {
		for _, s := range v.Value {
			s.Requests = req[s.KeyRange]
			out = append(out, s)
		}
	}
	return out, nil
}

// tablesQuery lists the sharded tables that hold rows (partitions, not their parents) with their size.
const tablesQuery = `
SELECT n.nspname, c.relname, pg_total_relation_size(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('auth', 'core', 'ai') AND c.relkind = 'r'
 ORDER BY 1, 2`

type table struct {
	name pgx.Identifier
	size int64
}

// Shard measures the assignments owned on one shard (t.RangesOf(tg.Shard)) as Collect does, rows and
// bytes in one snapshot, but without the medians, which only the planner needs (they cost an ordered
// walk of half of each keyrange's rows), and without requests. `shardmgr status --exact` calls it per
// shard, so that a shard that does not answer leaves the others reported.
func Shard(ctx context.Context, tg shardpool.Target, owned []topology.Assignment) ([]plan.Stats, error) {
	return measureShard(ctx, tg, owned, false)
}

func measureShard(ctx context.Context, tg shardpool.Target, owned []topology.Assignment, medians bool) ([]plan.Stats, error) {
	tx, err := tg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, tablesQuery)
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var schema, name string
		var tb table
		err := r.Scan(&schema, &name, &tb.size)
		tb.name = pgx.Identifier{schema, name}
		return tb, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	out := make([]plan.Stats, len(owned))
	args := make([]any, 0, 2*len(owned))
	var filters []string
	for i, a := range owned {
		out[i] = plan.Stats{KeyRange: a.Range, Shard: tg.Shard}
		cond, cargs := rangeCond(a.Range, len(args)+1)
		args = append(args, cargs...)
		filters = append(filters, "count(*) FILTER (WHERE "+cond+")")
	}
	if len(owned) == 0 {
		return out, nil
	}
	// Per table: its rows, then its rows per keyrange; bytes go to keyranges by their share of the rows.
	for _, tb := range tables {
		counts := make([]int64, len(owned)+1)
		dest := make([]any, len(counts))
		for i := range counts {
			dest[i] = &counts[i]
		}
		q := "SELECT count(*), " + strings.Join(filters, ", ") + " FROM " + tb.name.Sanitize()
		if err := tx.QueryRow(ctx, q, args...).Scan(dest...); err != nil {
			return nil, fmt.Errorf("counting %s: %w", tb.name.Sanitize(), err)
		}
		for i := range owned {
			n := counts[i+1]
			out[i].Rows += n
			if counts[0] > 0 {
				out[i].Bytes += tb.size * n / counts[0]
			}
		}
	}
	for i, a := range owned {
		if !medians || out[i].Rows < 2 || len(tables) == 0 {
			continue
		}
		m, err := median(ctx, tx, tables, a.Range, out[i].Rows)
		if err != nil {
			return nil, fmt.Errorf("median of %s: %w", a.Range, err)
		}
		out[i].Median = m
	}
	return out, nil
}

// rangeCond is the SQL condition of a keyrange on the bytea ksid, with its parameters numbered from n.
func rangeCond(kr shardkey.KeyRange, n int) (string, []any) {
	start := shardkey.KeyspaceID(kr.Start).Bytes()
	if kr.End == 0 {
		return fmt.Sprintf("ksid >= $%d", n), []any{start}
	}
	return fmt.Sprintf("ksid >= $%d AND ksid < $%d", n, n+1), []any{start, shardkey.KeyspaceID(kr.End).Bytes()}
}

// median returns the split point that divides the keyrange's rows in halves (plan.SplitPoint), or zero
// when there is none. It reads the ksids at offsets rows/2-1 and rows/2 of the union of every table's
// ksids in the keyrange; PostgreSQL merges the tables' primary-key indexes for the ORDER BY.
func median(ctx context.Context, tx pgx.Tx, tables []table, kr shardkey.KeyRange, rows int64) (shardkey.KeyspaceID, error) {
	cond, args := rangeCond(kr, 1)
	parts := make([]string, len(tables))
	for i, tb := range tables {
		parts[i] = "SELECT ksid FROM " + tb.name.Sanitize() + " WHERE " + cond
	}
	q := "SELECT ksid FROM (" + strings.Join(parts, " UNION ALL ") + fmt.Sprintf(") u ORDER BY ksid OFFSET $%d LIMIT 2", len(args)+1)
	r, err := tx.Query(ctx, q, append(args, rows/2-1)...)
	if err != nil {
		return 0, err
	}
	ksids, err := pgx.CollectRows(r, func(r pgx.CollectableRow) (shardkey.KeyspaceID, error) {
		var b []byte
		if err := r.Scan(&b); err != nil {
			return 0, err
		}
		return shardkey.KeyspaceIDFromBytes(b)
	})
	if err != nil {
		return 0, err
	}
	if len(ksids) != 2 {
		return 0, fmt.Errorf("expected 2 rows at offset %d, got %d", rows/2-1, len(ksids))
	}
	m, ok := plan.SplitPoint(kr, ksids[0], ksids[1])
	if !ok {
		return 0, nil
	}
	return m, nil
}
