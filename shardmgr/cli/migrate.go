package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func newMigrateCmd(o *options, env Env) *cobra.Command {
	var shards []string
	var concurrency int
	up := func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := withTimeout(cmd, o)
		defer cancel()
		targets, err := migrationTargets(ctx, o, shards)
		if err != nil {
			return err
		}
		lock, err := o.takeShardLock(ctx, env, "migrate up")
		if err != nil {
			return err
		}
		defer func() { _ = lock.Release(context.WithoutCancel(ctx)) }()
		results, err := migrate.Up(ctx, targets, migrate.Options{Concurrency: concurrency, Logger: o.logger(env)})
		if o.output == "json" {
			if jerr := writeJSON(env.Stdout, upJSON(results)); jerr != nil {
				return jerr
			}
		} else {
			printUp(env.Stdout, results)
		}
		return err
	}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending schema migrations to every shard (same as 'migrate up')",
		Args:  cobra.NoArgs,
		RunE:  up,
	}
	cmd.PersistentFlags().StringSliceVar(&shards, "shard", nil, "only these shards (repeatable; default every shard)")
	cmd.PersistentFlags().IntVar(&concurrency, "concurrency", 4, "shards migrated at once")
	upCmd := &cobra.Command{Use: "up", Short: "Apply pending migrations to every shard", Args: cobra.NoArgs, RunE: up}
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Show the applied and pending migrations of every shard",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			targets, err := migrationTargets(ctx, o, shards)
			if err != nil {
				return err
			}
			sts, err := migrate.Status(ctx, targets, migrate.Options{Concurrency: concurrency, Logger: o.logger(env)})
			if o.output == "json" {
				if jerr := writeJSON(env.Stdout, statusJSON(sts)); jerr != nil {
					return jerr
				}
			} else {
				printMigrateStatus(env.Stdout, sts)
			}
			return err
		},
	}
	var to int64
	var yes bool
	downCmd := &cobra.Command{
		Use:   "down --shard <name> --to <version> --yes",
		Short: "Roll one shard back to a version (destructive: the Down steps drop what the Up steps made)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(shards) != 1 {
				return usagef("down works on exactly one shard: give one --shard")
			}
			if !cmd.Flags().Changed("to") || to < 0 {
				return usagef("--to <version> is required (0 rolls back everything)")
			}
			if !yes {
				return usagef("down drops tables and data on shard %s; pass --yes to do it", shards[0])
			}
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			targets, err := migrationTargets(ctx, o, shards)
			if err != nil {
				return err
			}
			lock, err := o.takeShardLock(ctx, env, "migrate down")
			if err != nil {
				return err
			}
			defer func() { _ = lock.Release(context.WithoutCancel(ctx)) }()
			if err := migrate.Down(ctx, targets[0], to, migrate.Options{Logger: o.logger(env)}); err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(env.Stdout, map[string]any{"shard": shards[0], "version": to})
			}
			fmt.Fprintf(env.Stdout, "shard %s rolled back to version %d\n", shards[0], to)
			return nil
		},
	}
	downCmd.Flags().Int64Var(&to, "to", 0, "the version to leave applied")
	downCmd.Flags().BoolVar(&yes, "yes", false, "confirm the roll-back")
	cmd.AddCommand(upCmd, statusCmd, downCmd)
	return cmd
}

func migrationTargets(ctx context.Context, o *options, only []string) ([]migrate.Target, error) {
	t, _, err := o.load(ctx)
	if err != nil {
		return nil, err
	}
	var targets []migrate.Target
	for _, s := range t.Shards {
		if len(only) > 0 && !slices.Contains(only, s.Name) {
			continue
		}
		pw, err := shardpool.PasswordFromEnvOrFile(s.Conn)
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", s.Name, err)
		}
		targets = append(targets, migrate.Target{Shard: s.Name, DSN: shardpool.ConnString(s.Conn, pw)})
	}
	for _, name := range only {
		if _, ok := t.Shard(name); !ok {
			return nil, usagef("--shard %q: no such shard in topology version %d (shards: %s)", name, t.Version, shardNames(t))
		}
	}
	if len(targets) == 0 {
		return nil, errors.New("the topology has no shards")
	}
	return targets, nil
}

func shardNames(t *topology.Topology) string {
	names := make([]string, len(t.Shards))
	for i, s := range t.Shards {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func upJSON(results []migrate.ShardResult) any {
	type row struct {
		Shard   string  `json:"shard"`
		Applied []int64 `json:"applied"`
		Current int64   `json:"current"`
		Error   string  `json:"error,omitempty"`
	}
	out := make([]row, len(results))
	for i, r := range results {
		applied := r.Applied
		if applied == nil {
			applied = []int64{}
		}
		out[i] = row{Shard: r.Shard, Applied: applied, Current: r.Current, Error: errString(r.Err)}
	}
	return map[string]any{"shards": out}
}

func printUp(w io.Writer, results []migrate.ShardResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tAPPLIED NOW\tVERSION\tSTATUS")
	for _, r := range results {
		applied := "none"
		if len(r.Applied) > 0 {
			parts := make([]string, len(r.Applied))
			for i, v := range r.Applied {
				parts[i] = fmt.Sprint(v)
			}
			applied = strings.Join(parts, ",")
		}
		status := "ok"
		if r.Err != nil {
			status = "failed: " + firstLine(r.Err.Error())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Shard, applied, r.Current, status)
	}
	tw.Flush()
}

func statusJSON(sts []migrate.ShardStatus) any {
	type row struct {
		Shard   string  `json:"shard"`
		Current int64   `json:"current"`
		Pending []int64 `json:"pending"`
		Error   string  `json:"error,omitempty"`
	}
	out := make([]row, len(sts))
	for i, s := range sts {
		pending := s.Pending
		if pending == nil {
			pending = []int64{}
		}
		out[i] = row{Shard: s.Shard, Current: s.Current, Pending: pending, Error: errString(s.Err)}
	}
	return map[string]any{"shards": out}
}

func printMigrateStatus(w io.Writer, sts []migrate.ShardStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tVERSION\tPENDING\tSTATUS")
	for _, s := range sts {
		pending := "none"
		if len(s.Pending) > 0 {
			parts := make([]string, len(s.Pending))
			for i, v := range s.Pending {
				parts[i] = fmt.Sprint(v)
			}
			pending = strings.Join(parts, ",")
		}
		status := "ok"
		if s.Err != nil {
			status = "unreachable: " + firstLine(s.Err.Error())
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", s.Shard, s.Current, pending, status)
	}
	tw.Flush()
}
