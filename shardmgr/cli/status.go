package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/plan"
	"github.com/8thdegree/meridian/shardmgr/plan/collect"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// shardStats is what status reports per shard.
type shardStats struct {
	Shard     string   `json:"shard"`
	Region    string   `json:"region"`
	Database  string   `json:"database"`
	KeyRanges []string `json:"keyranges"`
	Rows      int64    `json:"rows"`
	Bytes     int64    `json:"bytes"`
	DBBytes   int64    `json:"database_bytes"`
	Exact     bool     `json:"rows_exact"`
	Error     string   `json:"error,omitempty"`
	// ranges is what status measured per keyrange of the shard: only with --exact (collect.Shard).
	ranges map[shardkey.KeyRange]plan.Stats
}

// keyRangeStats is what status reports per keyrange, in the order of the shards and their keyranges.
type keyRangeStats struct {
	KeyRange string `json:"keyrange"`
	Shard    string `json:"shard"`
	Region   string `json:"region"`
	State    string `json:"state"`
	// Rows and Bytes are null when not known: the shard did not answer, or it owns other keyranges
	// too and --exact was not given (the estimate is per shard, and only counting splits it).
	Rows  *int64 `json:"rows"`
	Bytes *int64 `json:"bytes"`
	Exact bool   `json:"rows_exact"`
}

type regionStats struct {
	Name     string `json:"name"`
	Code     string `json:"code"`
	Keyspace string `json:"keyspace"`
	Shards   int    `json:"shards"`
	Rows     int64  `json:"rows"`
	Bytes    int64  `json:"bytes"`
	Healthy  int    `json:"healthy_shards"`
}

// dataSchemas are the schemas that hold sharded rows.
var dataSchemas = []string{"auth", "core", "ai"}

func newStatusCmd(o *options, env Env) *cobra.Command {
	var exact bool
	var shardTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Regions, shards and keyranges, with rows and bytes per shard and per keyrange",
		Long: `Regions, shards and keyranges, with rows and bytes per region, per shard and per keyrange.

Rows are PostgreSQL's estimate (pg_stat_user_tables.n_live_tup, shown as ~N) unless --exact is
given, which counts every sharded table's rows, per shard and per keyrange of the shard (bytes are
the shard's table and index sizes apportioned to its keyranges by their share of each table's rows,
as the planner measures them). Without --exact a keyrange alone on its shard shows its shard's
estimate, and keyranges that share a shard show "-": only counting tells them apart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			stats, failed, err := collectStats(ctx, t, exact, shardTimeout, o)
			if err != nil {
				return err
			}
			regions := summarise(t, stats)
			ranges := keyRangesOf(t, stats)
			if o.output == "json" {
				if err := writeJSON(env.Stdout, map[string]any{"version": t.Version, "regions": regions, "shards": stats, "keyranges": ranges}); err != nil {
					return err
				}
			} else {
				printStatus(env.Stdout, t, regions, stats, ranges)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d shards did not answer", failed, len(stats))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&exact, "exact", false, "count rows exactly (reads every table) instead of the planner's estimate")
	cmd.Flags().DurationVar(&shardTimeout, "shard-timeout", 5*time.Second, "deadline per shard")
	return cmd
}

func collectStats(ctx context.Context, t *topology.Topology, exact bool, timeout time.Duration, o *options) ([]shardStats, int, error) {
	cfg := shardpool.DefaultConfig()
	cfg.MaxConns = 2
	cfg.ApplicationName = "shardmgr"
	cfg.ConnectTimeout = timeout
	pools, err := shardpool.New(cfg, nil)
	if err != nil {
		return nil, 0, err
	}
	defer pools.Close()
	if err := pools.Apply(ctx, t); err != nil {
		return nil, 0, err
	}
	targets := pools.Targets("")
	res := shardpool.Scatter(ctx, targets, shardpool.ScatterOptions{Concurrency: 6, PerShardTimeout: timeout},
		func(ctx context.Context, tg shardpool.Target) (shardStats, error) {
			st, err := shardStatsOf(ctx, tg, exact)
			if err != nil || !exact {
				return st, err
			}
			ms, err := collect.Shard(ctx, tg, t.RangesOf(tg.Shard))
			if err != nil {
				return st, fmt.Errorf("rows per keyrange: %w", err)
			}
			st.ranges = make(map[shardkey.KeyRange]plan.Stats, len(ms))
			for _, m := range ms {
				st.ranges[m.KeyRange] = m
			}
			return st, nil
		})
	byShard := make(map[string]shardStats, len(res.Values))
	for _, v := range res.Values {
		byShard[v.Shard] = v.Value
	}
	errs := make(map[string]error, len(res.Failed))
	for _, f := range res.Failed {
		errs[f.Shard] = f.Err
	}
	out := make([]shardStats, 0, len(t.Shards))
	for _, s := range t.Shards {
		st := byShard[s.Name]
		st.Shard, st.Region, st.Database = s.Name, s.Region, fmt.Sprintf("%s:%d/%s", s.Conn.Host, s.Conn.Port, s.Conn.Database)
		st.KeyRanges = []string{}
		for _, a := range t.RangesOf(s.Name) {
			kr := a.Range.String()
			if a.State != topology.Serving {
				kr += "(" + string(a.State) + ")"
			}
			st.KeyRanges = append(st.KeyRanges, kr)
		}
		if err, ok := errs[s.Name]; ok {
			st.Error = firstLine(err.Error())
		}
		out = append(out, st)
	}
	return out, len(res.Failed), nil
}

func shardStatsOf(ctx context.Context, tg shardpool.Target, exact bool) (shardStats, error) {
	var st shardStats
	err := tg.Pool.QueryRow(ctx, `
		SELECT coalesce(sum(s.n_live_tup), 0)::bigint,
		       coalesce(sum(pg_total_relation_size(s.relid)), 0)::bigint,
		       pg_database_size(current_database())
		  FROM pg_stat_user_tables s
		 WHERE s.schemaname = ANY($1)`, dataSchemas).Scan(&st.Rows, &st.Bytes, &st.DBBytes)
	if err != nil || !exact {
		return st, err
	}
	rows, err := tg.Pool.Query(ctx, `SELECT schemaname, relname FROM pg_stat_user_tables WHERE schemaname = ANY($1)`, dataSchemas)
	if err != nil {
		return st, err
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var schema, name string
		err := r.Scan(&schema, &name)
		return pgx.Identifier{schema, name}, err
	})
	if err != nil {
		return st, err
	}
	st.Rows, st.Exact = 0, true
	for _, tb := range tables {
		var n int64
		if err := tg.Pool.QueryRow(ctx, "SELECT count(*) FROM "+tb.Sanitize()).Scan(&n); err != nil {
			return st, err
		}
		st.Rows += n
	}
	return st, nil
}

// keyRangesOf lists every shard's keyranges with what is known of their rows and bytes: measured
// with --exact; without it, the shard's estimate when the keyrange is the shard's only one.
func keyRangesOf(t *topology.Topology, stats []shardStats) []keyRangeStats {
	out := make([]keyRangeStats, 0, len(t.KeyRanges))
	for _, s := range stats {
		owned := t.RangesOf(s.Shard)
		for _, a := range owned {
			ks := keyRangeStats{KeyRange: a.Range.String(), Shard: s.Shard, Region: s.Region, State: string(a.State)}
			if m, ok := s.ranges[a.Range]; ok {
				ks.Rows, ks.Bytes, ks.Exact = &m.Rows, &m.Bytes, true
			} else if s.Error == "" && len(owned) == 1 {
				rows, bytes := s.Rows, s.Bytes
				ks.Rows, ks.Bytes, ks.Exact = &rows, &bytes, s.Exact
			}
			out = append(out, ks)
		}
	}
	return out
}

func summarise(t *topology.Topology, stats []shardStats) []regionStats {
	out := make([]regionStats, 0, len(t.Regions))
	for _, r := range t.Regions {
		rs := regionStats{Name: r.Name, Code: r.Code.String(), Keyspace: r.KeyRange().String()}
		for _, s := range stats {
			if s.Region != r.Name {
				continue
			}
			rs.Shards++
			rs.Rows += s.Rows
			rs.Bytes += s.Bytes
			if s.Error == "" {
				rs.Healthy++
			}
		}
		out = append(out, rs)
	}
	return out
}

func printStatus(w io.Writer, t *topology.Topology, regions []regionStats, stats []shardStats, ranges []keyRangeStats) {
	fmt.Fprintf(w, "topology version %d: %d regions, %d shards, %d keyranges, %d relocations\n\n", t.Version, len(t.Regions), len(t.Shards), len(t.KeyRanges), len(t.Relocations))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tCODE\tKEYSPACE\tSHARDS\tHEALTHY\tROWS\tBYTES")
	for _, r := range regions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.Name, r.Code, r.Keyspace, r.Shards, r.Healthy, r.Rows, humanBytes(r.Bytes))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tREGION\tKEYRANGES\tROWS\tBYTES\tDATABASE\tSTATUS")
	for _, s := range stats {
		status, rows, bytes := "ok", fmt.Sprint(s.Rows), humanBytes(s.Bytes)
		if !s.Exact && s.Error == "" {
			rows = "~" + rows
		}
		if s.Error != "" {
			status, rows, bytes = "unreachable: "+s.Error, "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Shard, s.Region, strings.Join(s.KeyRanges, " "), rows, bytes, s.Database, status)
	}
	tw.Flush()
	if len(ranges) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEYRANGE\tSHARD\tREGION\tSTATE\tROWS\tBYTES")
	unknown := false
	for _, k := range ranges {
		rows, bytes := "-", "-"
		if k.Rows != nil {
			rows, bytes = fmt.Sprint(*k.Rows), humanBytes(*k.Bytes)
			if !k.Exact {
				rows = "~" + rows
			}
		}
		unknown = unknown || k.Rows == nil
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.KeyRange, k.Shard, k.Region, k.State, rows, bytes)
	}
	tw.Flush()
	if unknown {
		fmt.Fprintln(w, "\n-: not known (the shard did not answer, or it owns several keyranges: --exact counts each)")
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
