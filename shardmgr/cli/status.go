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
		Short: "Regions, shards and keyranges, with rows and bytes per shard",
		Args:  cobra.NoArgs,
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
			if o.output == "json" {
				if err := writeJSON(env.Stdout, map[string]any{"version": t.Version, "regions": regions, "shards": stats}); err != nil {
					return err
				}
			} else {
				printStatus(env.Stdout, t, regions, stats)
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
			return shardStatsOf(ctx, tg, exact)
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

func printStatus(w io.Writer, t *topology.Topology, regions []regionStats, stats []shardStats) {
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
