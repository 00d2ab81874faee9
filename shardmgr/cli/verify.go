package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/verify"
)

// verifyTimeout replaces the global --timeout's default for verify, which reads every row of the
// keyrange on both shards: 30 s would cut a big keyrange short. An explicit --timeout wins.
const verifyTimeout = time.Hour

func newVerifyCmd(o *options, env Env) *cobra.Command {
	var against string
	var opts verify.Options
	cmd := &cobra.Command{
		Use:   "verify <keyrange> [--against <shard>]",
		Short: "Compare a keyrange's rows on its shard and another shard of its region: counts, checksums, differing keys",
		Long: `Compare every sharded table's rows in <keyrange> on the shard that owns it (from the topology)
and on --against, a shard of the same region: rows on each side, checksum equal or not, and the
primary keys (ksid in hex|the rest of the key) of rows that differ or exist on one side only.
Each side is read in one REPEATABLE READ READ ONLY transaction; nothing is written.

Without --against, a keyrange in a move that is not finished (its record under --moves-prefix
equals or contains the keyrange) is compared with the move's target, or with its source once the
move has flipped the keyrange to the target. Without a move and without --against: exit 2.

Exit 0: the keyrange is the same on both shards; 1: it differs (or a shard could not be read);
2: the command line is wrong. The deadline is 1h unless --timeout is given.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := shardkey.ParseKeyRange(args[0])
			if err != nil {
				return usageError{err}
			}
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			timeout := verifyTimeout
			if cmd.Flags().Changed("timeout") {
				timeout = o.timeout
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			var inMove *move.Move
			if against == "" {
				if against, inMove, err = o.moveCounterpart(ctx, env, t, kr); err != nil {
					return err
				}
			}
			src, tgt, err := verifyShards(t, kr, against)
			if err != nil {
				return err
			}
			srcPool, err := verifyPool(ctx, src)
			if err != nil {
				return err
			}
			defer srcPool.Close()
			tgtPool, err := verifyPool(ctx, tgt)
			if err != nil {
				return err
			}
			defer tgtPool.Close()
			note := ""
			if inMove != nil {
				note = fmt.Sprintf("--against %s: the %s of move %s (keyrange %s, %s → %s, %s)", tgt.Name, moveSide(inMove, tgt.Name), inMove.ID, inMove.KeyRange, inMove.Source, inMove.Target, inMove.Status)
			}
			o.logger(env).Info("verifying", "keyrange", kr.String(), "source", src.Name, "target", tgt.Name, "move", moveID(inMove))
			rep, err := verify.Compare(ctx, srcPool, tgtPool, kr, opts)
			if err != nil {
				return fmt.Errorf("verify %s on %s against %s: %w", kr, src.Name, tgt.Name, err)
			}
			if o.output == "json" {
				if err := writeJSON(env.Stdout, verifyJSON{KeyRange: kr, Source: src.Name, Target: tgt.Name, Move: moveID(inMove), Equal: rep.Equal(), Tables: rep.Tables}); err != nil {
					return err
				}
			} else {
				printVerify(env.Stdout, rep, src.Name, tgt.Name, note)
			}
			if d := rep.Differing(); len(d) > 0 {
				names := make([]string, len(d))
				for i, tr := range d {
					names[i] = tr.Table
				}
				return fmt.Errorf("keyrange %s differs between %s and %s in %d of %d tables: %s", kr, src.Name, tgt.Name, len(d), len(rep.Tables), strings.Join(names, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&against, "against", "", "the shard to compare with (same region as the keyrange's owner; default: the other shard of the move the keyrange is in)")
	f.IntVar(&opts.Limit, "limit", verify.DefaultLimit, "differing keys listed per table (all are counted)")
	f.StringSliceVar(&opts.Tables, "table", nil, "only these tables, schema.table (repeatable; default every sharded table)")
	f.IntVar(&opts.ChunkRows, "chunk-rows", verify.DefaultChunkRows, "rows per checksum chunk")
	return cmd
}

// moveCounterpart chooses --against when it is not given: the other shard of the unfinished move
// whose keyrange equals or contains kr. That is the move's target while the source owns the
// keyrange, and the source once the flip made the target its owner (until cleanup has deleted the
// source's rows, they still compare). No such move is a usage error: there is nothing to default to.
func (o *options) moveCounterpart(ctx context.Context, env Env, t *topology.Topology, kr shardkey.KeyRange) (string, *move.Move, error) {
	r, err := o.runner(env, 0, nil)
	if err != nil {
		return "", nil, err
	}
	ms, err := r.List(ctx, false)
	if err != nil {
		return "", nil, fmt.Errorf("looking for a move of %s under %s: %w", kr, o.movesPrefix, err)
	}
	for _, m := range ms {
		if !m.KeyRange.ContainsRange(kr) {
			continue
		}
		for _, a := range t.KeyRanges {
			if a.Range.ContainsRange(kr) && a.Shard == m.Target {
				return m.Source, m, nil
			}
		}
		return m.Target, m, nil
	}
	return "", nil, usagef("--against <shard> is required: no unfinished move under %s covers %s, so there is no move target to compare %s's owner with", o.movesPrefix, kr, kr)
}

// moveSide names the part shard plays in m.
func moveSide(m *move.Move, shard string) string {
	if shard == m.Source {
		return "source"
	}
	return "target"
}

func moveID(m *move.Move) string {
	if m == nil {
		return ""
	}
	return m.ID
}

// verifyShards returns the shard that owns kr and the one named by against, refusing what the
// command line got wrong: a keyrange no single shard owns, an unknown shard, the owner itself, or
// a shard of another region (a keyrange's rows never leave their region).
func verifyShards(t *topology.Topology, kr shardkey.KeyRange, against string) (topology.Shard, topology.Shard, error) {
	var owner *topology.Assignment
	var overlaps []string
	for i, a := range t.KeyRanges {
		if a.Range.ContainsRange(kr) {
			owner = &t.KeyRanges[i]
			break
		}
		if a.Range.Overlaps(kr) {
			overlaps = append(overlaps, a.Range.String()+" on "+a.Shard)
		}
	}
	switch {
	case owner == nil && len(overlaps) > 0:
		return topology.Shard{}, topology.Shard{}, usagef("keyrange %s spans %d keyranges of topology version %d (%s): verify each on its own", kr, len(overlaps), t.Version, strings.Join(overlaps, ", "))
	case owner == nil:
		return topology.Shard{}, topology.Shard{}, usagef("keyrange %s is in no keyrange of topology version %d", kr, t.Version)
	}
	src, ok := t.Shard(owner.Shard)
	if !ok {
		return topology.Shard{}, topology.Shard{}, fmt.Errorf("keyrange %s is assigned to shard %s, which topology version %d does not define", owner.Range, owner.Shard, t.Version)
	}
	tgt, ok := t.Shard(against)
	switch {
	case !ok:
		return src, tgt, usagef("--against %q: no such shard in topology version %d (shards: %s)", against, t.Version, shardNames(t))
	case tgt.Name == src.Name:
		return src, tgt, usagef("--against %s is the owner of %s itself: name another shard of region %s", against, kr, src.Region)
	case tgt.Region != src.Region:
		return src, tgt, usagef("--against %s is in region %s, but %s belongs to %s (on %s): verify compares shards of the keyrange's own region", against, tgt.Region, kr, src.Region, src.Name)
	}
	return src, tgt, nil
}

// verifyPool opens a small pool to one shard: a comparison holds one connection per side.
func verifyPool(ctx context.Context, s topology.Shard) (*pgxpool.Pool, error) {
	pw, err := shardpool.PasswordFromEnvOrFile(s.Conn)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", s.Name, err)
	}
	cfg, err := pgxpool.ParseConfig(shardpool.ConnString(s.Conn, pw))
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", s.Name, err)
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	cfg.ConnConfig.RuntimeParams["application_name"] = "shardmgr-verify"
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", s.Name, err)
	}
	if err := p.Ping(ctx); err != nil {
		p.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("shard %s did not answer in time: %w", s.Name, err)
		}
		return nil, fmt.Errorf("shard %s: %w", s.Name, err)
	}
	return p, nil
}

type verifyJSON struct {
	KeyRange shardkey.KeyRange `json:"keyrange"`
	Source   string            `json:"source"`
	Target   string            `json:"target"`
	// Move is the move whose shard --against defaulted to; empty when --against was given.
	Move   string               `json:"move,omitempty"`
	Equal  bool                 `json:"equal"`
	Tables []verify.TableReport `json:"tables"`
}

// printVerify prints the report; note, when not empty, says where --against came from.
func printVerify(w io.Writer, rep verify.Report, src, tgt, note string) {
	fmt.Fprintf(w, "keyrange %s: %s (owner) against %s\n", rep.KeyRange, src, tgt)
	if note != "" {
		fmt.Fprintln(w, note)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TABLE\tROWS %s\tROWS %s\tCHECKSUM\tDIFFERING\n", src, tgt)
	var rows int64
	for _, t := range rep.Tables {
		rows += t.SourceRows
		check, diff := "equal", fmt.Sprint(t.DifferingRows)
		switch {
		case t.Problem != "":
			check, diff = "-", t.Problem
		case t.SourceChecksum != t.TargetChecksum:
			check = "differs"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", t.Table, t.SourceRows, t.TargetRows, check, diff)
	}
	tw.Flush()
	for _, t := range rep.Tables {
		if len(t.Differing) == 0 {
			continue
		}
		what := fmt.Sprintf("%d rows differ or exist on one side only", t.DifferingRows)
		if t.DifferingRows == 1 {
			what = "1 row differs or exists on one side only"
		}
		if t.DifferingRows > int64(len(t.Differing)) {
			what += fmt.Sprintf(" (the first %d listed)", len(t.Differing))
		}
		fmt.Fprintf(w, "\n%s: %s:\n", t.Table, what)
		for _, k := range t.Differing {
			fmt.Fprintf(w, "  %s\n", k)
		}
	}
	fmt.Fprintln(w)
	if d := rep.Differing(); len(d) > 0 {
		fmt.Fprintf(w, "DIFFERENT: %d of %d tables differ between %s and %s\n", len(d), len(rep.Tables), src, tgt)
		return
	}
	fmt.Fprintf(w, "EQUAL: %d tables, %d rows, the same on %s and %s\n", len(rep.Tables), rows, src, tgt)
}
