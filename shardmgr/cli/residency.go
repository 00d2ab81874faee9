package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/shardmgr/residency"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func newResidencyCmd(o *options, env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "residency",
		Short: "Prove where user data lives",
	}
	var (
		region       string
		limit        int
		concurrency  int
		shardTimeout time.Duration
		reportFile   string
	)
	audit := &cobra.Command{
		Use:   "audit [--region <r>] [--limit N] [--report <file>]",
		Short: "Check that every row is in its owner's region and on its keyrange's shard; exit 1 if not, or if a shard cannot be read",
		Long: `Reads every sharded table of every shard (of one region with --region) and checks each row
against the topology: its ksid, after the relocation map, must name the shard's region and fall in a
keyrange the shard owns. Rows under a relocated-from ksid (an unfinished pin), users whose region
column disagrees, and email claims the directory would not find or that name a stale home region are
violations too. The counts are exact; up to --limit keys are listed per table and class.

Exit 0: clean. Exit 1: violations, or incomplete (a shard could not be read, or the topology changed
during the audit): there is never a clean verdict on partial data. --output json (and --report) is
the compliance artifact: topology version, times, totals, every shard and table, the rules.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return usagef("--limit must be at least 1, got %d", limit)
			}
			if concurrency < 1 {
				return usagef("--concurrency must be at least 1, got %d", concurrency)
			}
			if shardTimeout <= 0 {
				return usagef("--shard-timeout must be positive")
			}
			// Reading every row takes as long as it takes: the audit is bounded per shard, and by
			// the whole-command --timeout only when it is given.
			ctx := cmd.Context()
			if cmd.Flags().Changed("timeout") {
				var cancel context.CancelFunc
				ctx, cancel = withTimeout(cmd, o)
				defer cancel()
			}
			lctx, lcancel := context.WithTimeout(ctx, o.timeout)
			t, _, err := o.load(lctx)
			lcancel()
			if err != nil {
				return err
			}
			if region != "" {
				if _, ok := t.Region(region); !ok {
					return usagef("--region %q: no such region in topology version %d (regions: %s)", region, t.Version, regionNames(t))
				}
			}
			rep, err := runAudit(ctx, t, residency.Options{Region: region, Limit: limit, Concurrency: concurrency, PerShardTimeout: shardTimeout}, o)
			if err != nil {
				return err
			}
			o.recheck(ctx, &rep)
			if reportFile != "" {
				var b bytes.Buffer
				if err := writeJSON(&b, rep); err != nil {
					return err
				}
				if err := os.WriteFile(reportFile, b.Bytes(), 0o640); err != nil {
					return fmt.Errorf("writing the report (the audit ran: %s): %w", rep.Summary(), err)
				}
			}
			if o.output == "json" {
				if err := writeJSON(env.Stdout, rep); err != nil {
					return err
				}
			} else {
				printAudit(env.Stdout, rep)
			}
			if rep.Verdict != residency.Clean {
				return errors.New("residency audit " + rep.Summary())
			}
			return nil
		},
	}
	f := audit.Flags()
	f.StringVar(&region, "region", "", "audit only this region's shards")
	f.IntVar(&limit, "limit", 20, "keys listed per table and class (the counts are always complete)")
	f.IntVar(&concurrency, "concurrency", 4, "shards read at once")
	f.DurationVar(&shardTimeout, "shard-timeout", 10*time.Minute, "deadline for reading one shard")
	f.StringVar(&reportFile, "report", "", "also write the JSON report to this file")
	cmd.AddCommand(audit)
	return cmd
}

func runAudit(ctx context.Context, t *topology.Topology, opts residency.Options, o *options) (residency.Report, error) {
	cfg := shardpool.DefaultConfig()
	cfg.MaxConns = 2
	cfg.ApplicationName = "shardmgr-residency"
	cfg.ConnectTimeout = min(opts.PerShardTimeout, 10*time.Second)
	pools, err := shardpool.New(cfg, nil)
	if err != nil {
		return residency.Report{}, err
	}
	defer pools.Close()
	if err := pools.Apply(ctx, t); err != nil {
		return residency.Report{}, err
	}
	return residency.Audit(ctx, t, pools, opts)
}

// recheck withdraws the verdict when the topology changed while the shards were read (a move's
// flip between two shards' snapshots can make a row look missing or doubled), and warns when a
// shard operation holds the lock (a move copies and cleans rows that are then on two shards).
func (o *options) recheck(ctx context.Context, rep *residency.Report) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	now, _, err := o.load(ctx)
	switch {
	case err != nil:
		rep.MarkIncomplete(fmt.Sprintf("the topology could not be read again after the audit (%v)", err))
	case now.Version != rep.TopologyVersion:
		rep.MarkIncomplete(fmt.Sprintf("the topology changed from version %d to %d during the audit; run it again", rep.TopologyVersion, now.Version))
	}
	client, err := o.consulClient()
	if err != nil {
		return
	}
	pair, _, err := client.KV().Get(o.lockKey, (&consul.QueryOptions{}).WithContext(ctx))
	if err == nil && pair != nil && pair.Session != "" {
		holder := strings.TrimSpace(string(pair.Value))
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("a shard operation held %s during the audit (holder %q): rows of a keyrange it is copying or cleaning may show as in_move or wrong_shard", o.lockKey, holder))
	}
}

func regionNames(t *topology.Topology) string {
	names := make([]string, len(t.Regions))
	for i, r := range t.Regions {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}

func printAudit(w io.Writer, rep residency.Report) {
	scope := "every region"
	if rep.Region != "" {
		scope = "region " + rep.Region
	}
	fmt.Fprintf(w, "residency audit of topology version %d (%s), %s, took %s\n\n", rep.TopologyVersion, scope,
		rep.StartedAt.Format(time.RFC3339), rep.FinishedAt.Sub(rep.StartedAt).Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSHARD\tKEYRANGES\tTABLE\tROWS\tVIOLATIONS\tSTATUS")
	for _, s := range rep.Shards {
		krs := strings.Join(s.KeyRanges, " ")
		if krs == "" {
			krs = "(none)"
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\tunreadable: %s\n", s.Region, s.Shard, krs, s.Error)
			continue
		}
		// Empty tables are one line: the JSON report lists each of them.
		empty := 0
		for _, tr := range s.Tables {
			if tr.Rows == 0 {
				empty++
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Region, s.Shard, krs, tr.Table, tr.Rows, tr.Violations, tableStatus(tr))
		}
		if empty > 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t(%d empty tables)\t0\t0\tok\n", s.Region, s.Shard, krs, empty)
		}
	}
	tw.Flush()
	var offenders [][2]string
	for _, s := range rep.Shards {
		for _, tr := range s.Tables {
			for _, of := range tr.Offenders {
				belongs := of.BelongsRegion
				if of.BelongsShard != "" {
					belongs += "/" + of.BelongsShard
				}
				offenders = append(offenders, [2]string{s.Shard + "\t" + tr.Table, fmt.Sprintf("%s\t%s\t%s\t%s\t%s", of.Class, of.Key, of.Region, belongs, of.Note)})
			}
		}
	}
	if len(offenders) > 0 {
		fmt.Fprintf(w, "\noffending rows (up to %d keys per table and class; KEY is the primary key, hex, '|' between columns):\n", rep.Limit)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SHARD\tTABLE\tCLASS\tKEY\tKSID REGION\tBELONGS IN\tNOTE")
		for _, of := range offenders {
			fmt.Fprintf(tw, "%s\t%s\n", of[0], of[1])
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\ntotals: %d shards (%d unreadable), %d tables, %d rows, %d violations", rep.Totals.Shards, rep.Totals.ShardsFailed, rep.Totals.Tables, rep.Totals.Rows, rep.Totals.Violations)
	for _, c := range residency.Classes {
		if n := rep.Totals.ByClass[c]; n > 0 {
			fmt.Fprintf(w, ", %s %d", c, n)
		}
	}
	fmt.Fprintln(w)
	for _, warn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	fmt.Fprintf(w, "verdict: %s\n", rep.Summary())
}

func tableStatus(tr residency.TableReport) string {
	var parts []string
	for _, c := range residency.Classes {
		if n := tr.ByClass[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, ", ")
}
