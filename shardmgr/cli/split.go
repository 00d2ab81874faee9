package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/topoedit"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

func newSplitCmd(o *options, env Env) *cobra.Command {
	var at string
	var yes bool
	cmd := &cobra.Command{
		Use:   "split <keyrange> --at <hex> [--yes]",
		Short: "Split a keyrange in two on the same shard (metadata only: no data moves)",
		Long: `Split one keyrange assignment in two on its shard, with check-and-set on the topology. Nothing is
copied: the shard already holds both halves' rows. The keyrange is written in Vitess notation (20-2080)
and must be exactly one serving assignment; the point is a Vitess bound (2040, or up to 16 hex digits)
strictly inside it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := shardkey.ParseKeyRange(args[0])
			if err != nil {
				return usagef("keyrange %q: %v", args[0], err)
			}
			if at == "" {
				return usagef("--at <hex> is required: the split point, e.g. --at 2040")
			}
			point, err := parseBound(at)
			if err != nil {
				return err
			}
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			preview := t.Clone()
			lo, hi, err := topoedit.Split(preview, kr, point)
			if err != nil {
				return fmt.Errorf("%w (nothing changed)", err)
			}
			a, _ := findAssignment(t, kr)
			if !yes {
				return usagef("split %s on %s at %s into %s and %s changes the topology; pass --yes to do it", kr, a.Shard, at, lo, hi)
			}
			var version uint64
			err = withShardLock(ctx, o, "split "+kr.String(), func(ctx context.Context, st *topostore.Store, _ *shardlock.Lock) error {
				v, err := splitInStore(ctx, st, kr, point)
				version = v
				return err
			})
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(env.Stdout, map[string]any{"keyrange": kr, "shard": a.Shard, "at": strings.ToLower(at), "halves": []shardkey.KeyRange{lo, hi}, "version": version})
			}
			fmt.Fprintf(env.Stdout, "split %s on %s at %s: %s and %s, both serving on %s; topology version %d (no data moved)\n", kr, a.Shard, strings.ToLower(at), lo, hi, a.Shard, version)
			return nil
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "split point: a Vitess bound in hex (2040) or a whole ksid (16 hex digits)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the split")
	return cmd
}

// splitInStore splits kr at point with check-and-set, checked again on the latest document, and returns
// the version written.
func splitInStore(ctx context.Context, st *topostore.Store, kr shardkey.KeyRange, point shardkey.KeyspaceID) (uint64, error) {
	var next *topology.Topology
	if _, err := st.Modify(ctx, func(t *topology.Topology) error {
		next = t
		_, _, err := topoedit.Split(t, kr, point)
		return err
	}); err != nil {
		return 0, fmt.Errorf("splitting %s: %w (nothing changed)", kr, err)
	}
	return next.Version, nil
}

func findAssignment(t *topology.Topology, kr shardkey.KeyRange) (topology.Assignment, bool) {
	for _, a := range t.KeyRanges {
		if a.Range == kr {
			return a, true
		}
	}
	return topology.Assignment{}, false
}

// parseBound reads a split point as a Vitess keyrange bound: whole bytes of hex, at most 8, padded
// with zero bytes ("2040" is 2040000000000000).
func parseBound(s string) (shardkey.KeyspaceID, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 || len(b) > 8 {
		return 0, usagef("--at %q: want 1 to 8 whole bytes of hex, e.g. 2040 or 2040a1b2c3d4e5f6", s)
	}
	var buf [8]byte
	copy(buf[:], b)
	k, err := shardkey.KeyspaceIDFromBytes(buf[:])
	if err != nil {
		return 0, usagef("--at %q: %v", s, err)
	}
	return k, nil
}
