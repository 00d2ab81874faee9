package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

func newTopologyCmd(o *options, env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Create, replace, check and show the topology document",
	}
	var from string
	var force bool
	initCmd := &cobra.Command{
		Use:   "init --from <file>",
		Short: "Write the first topology to Consul from a YAML or JSON file (refuses if one exists)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return usagef("--from is required")
			}
			t, err := topology.LoadFile(from)
			if err != nil {
				return err
			}
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			st, err := o.store()
			if err != nil {
				return err
			}
			t.UpdatedAt = time.Now().UTC()
			idx, err := st.Create(ctx, t)
			if errors.Is(err, topostore.ErrConflict) {
				cur, _, lerr := st.Load(ctx)
				if lerr == nil {
					return fmt.Errorf("a topology already exists at %s (version %d); use 'shardmgr topology apply --from %s' to replace it", o.key, cur.Version, from)
				}
				return fmt.Errorf("a topology already exists at %s: %w", o.key, err)
			}
			if err != nil {
				return fmt.Errorf("writing the topology to Consul at %s: %w", o.consulAddr, err)
			}
			return report(env.Stdout, o, "created", t, idx)
		},
	}
	initCmd.Flags().StringVar(&from, "from", "", "topology file (.yaml, .yml or .json)")

	var applyFrom string
	var expectVersion uint64
	applyCmd := &cobra.Command{
		Use:   "apply --from <file>",
		Short: "Replace the topology with a file's, with check-and-set on the version read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if applyFrom == "" {
				return usagef("--from is required")
			}
			next, err := topology.LoadFile(applyFrom)
			if err != nil {
				return err
			}
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			cur, idx, err := o.load(ctx)
			if err != nil {
				return err
			}
			if expectVersion != 0 && cur.Version != expectVersion {
				return fmt.Errorf("topology is at version %d, not the expected %d; nothing written", cur.Version, expectVersion)
			}
			if !force {
				if err := checkNoStateChanges(cur, next); err != nil {
					return err
				}
			}
			next.Version = cur.Version
			next.UpdatedAt = time.Now().UTC()
			st, err := o.store()
			if err != nil {
				return err
			}
			nidx, err := st.Update(ctx, next, idx)
			if err != nil {
				return fmt.Errorf("writing the topology: %w (nothing written)", err)
			}
			return report(env.Stdout, o, "applied", next, nidx)
		},
	}
	applyCmd.Flags().StringVar(&applyFrom, "from", "", "topology file (.yaml, .yml or .json)")
	applyCmd.Flags().Uint64Var(&expectVersion, "expect-version", 0, "refuse unless the stored topology is at this version")
	applyCmd.Flags().BoolVar(&force, "force", false, "allow a file to change keyranges that are frozen or moving")

	var checkFrom string
	validateCmd := &cobra.Command{
		Use:   "validate --from <file>",
		Short: "Check a topology file without writing anything",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if checkFrom == "" {
				return usagef("--from is required")
			}
			t, err := topology.LoadFile(checkFrom)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(env.Stdout, map[string]any{"valid": true, "regions": len(t.Regions), "shards": len(t.Shards), "keyranges": len(t.KeyRanges)})
			}
			fmt.Fprintf(env.Stdout, "%s: valid (%d regions, %d shards, %d keyranges)\n", checkFrom, len(t.Regions), len(t.Shards), len(t.KeyRanges))
			return nil
		},
	}
	validateCmd.Flags().StringVar(&checkFrom, "from", "", "topology file (.yaml, .yml or .json)")

	showCmd := &cobra.Command{
		Use:   "show",
		Short: "Print the topology in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(env.Stdout, t)
			}
			return printTopology(env.Stdout, t)
		},
	}
	cmd.AddCommand(initCmd, applyCmd, validateCmd, showCmd)
	return cmd
}

// checkNoStateChanges refuses a file that would silently rewrite keyranges a move is working on.
func checkNoStateChanges(cur, next *topology.Topology) error {
	for _, a := range cur.KeyRanges {
		if a.State == topology.Serving {
			continue
		}
		found := false
		for _, b := range next.KeyRanges {
			if b == a {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("keyrange %s on %s is %s (a move is in progress) and the file changes it; finish or abort the move, or pass --force", a.Range, a.Shard, a.State)
		}
	}
	return nil
}

func report(w io.Writer, o *options, what string, t *topology.Topology, idx uint64) error {
	if o.output == "json" {
		return writeJSON(w, map[string]any{"result": what, "key": o.key, "version": t.Version, "consul_index": idx})
	}
	fmt.Fprintf(w, "topology %s at %s: version %d (%d regions, %d shards, %d keyranges)\n", what, o.key, t.Version, len(t.Regions), len(t.Shards), len(t.KeyRanges))
	return nil
}

func printTopology(w io.Writer, t *topology.Topology) error {
	fmt.Fprintf(w, "version %d, updated %s\n\n", t.Version, t.UpdatedAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tCODE\tKEYSPACE\tAPI SERVICE\tREDIS\tCONSUL DC")
	for _, r := range t.Regions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Code, r.KeyRange(), r.APIService, r.RedisAddr, r.ConsulDC)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tREGION\tDATABASE\tKEYRANGES")
	for _, s := range t.Shards {
		ranges := ""
		for i, a := range t.RangesOf(s.Name) {
			if i > 0 {
				ranges += " "
			}
			ranges += a.Range.String()
			if a.State != topology.Serving {
				ranges += "(" + string(a.State) + ")"
			}
		}
		if ranges == "" {
			ranges = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s:%d/%s\t%s\n", s.Name, s.Region, s.Conn.Host, s.Conn.Port, s.Conn.Database, ranges)
	}
	tw.Flush()
	if len(t.Relocations) > 0 {
		fmt.Fprintf(w, "\n%d relocations\n", len(t.Relocations))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FROM\tTO\tSTATE")
		for _, r := range t.Relocations {
			state := "active"
			if !r.Active() {
				state = string(r.State) + " (a pin's cutover)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.From, r.To, state)
		}
		tw.Flush()
	}
	return nil
}
