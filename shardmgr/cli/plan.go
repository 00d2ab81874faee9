package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/load"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/plan"
	"github.com/8thdegree/meridian/shardmgr/plan/collect"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// mover runs one online move of kr to target until it is done.
type mover interface {
	Move(ctx context.Context, kr shardkey.KeyRange, target string) error
}

// lockedMover runs rebalance's moves through shardmgr/move under the lock rebalance holds, so that
// nothing else reshards between its steps.
type lockedMover struct {
	r    *move.Runner
	lock *shardlock.Lock
}

func (m lockedMover) Move(ctx context.Context, kr shardkey.KeyRange, target string) error {
	_, err := m.r.StartHolding(ctx, m.lock, kr, target)
	return err
}

// planFlags are the planner's options on the command line, shared by plan and rebalance.
type planFlags struct {
	opts         plan.Options
	shardTimeout time.Duration
	noRequests   bool
}

func (p *planFlags) bind(cmd *cobra.Command) {
	p.opts = plan.DefaultOptions()
	f := cmd.Flags()
	f.StringVar(&p.opts.Region, "region", "", "plan one region only (default: every region, each on its own)")
	f.Float64Var(&p.opts.SplitShare, "split-share", p.opts.SplitShare, "split a keyrange holding more than this share (0-1] of its region's rows or requests")
	f.Float64Var(&p.opts.MoveExcess, "move-excess", p.opts.MoveExcess, "move keyranges off a shard above the region's mean by more than this fraction of it")
	f.IntVar(&p.opts.MaxSteps, "max-steps", p.opts.MaxSteps, "most steps in one plan")
	f.DurationVar(&p.shardTimeout, "shard-timeout", 30*time.Second, "deadline for measuring each shard")
	f.BoolVar(&p.noRequests, "no-requests", false, "balance by rows alone, without the API nodes' request counts")
}

// nodeRequests weighs keyranges by the requests the regions' API nodes routed to them (shardmgr/load):
// reads and writes together, totals since each node started. A node that cannot be scraped is left out,
// with a warning; Consul failing to list a region's nodes fails the plan.
type nodeRequests struct {
	c    *consul.Client
	warn io.Writer
}

var _ collect.RequestCounter = nodeRequests{}

func (n nodeRequests) Requests(ctx context.Context, t *topology.Topology) (map[shardkey.KeyRange]int64, error) {
	l, err := load.Collect(ctx, n.c, t)
	if err != nil {
		return nil, err
	}
	if failed := l.Failed(); len(failed) > 0 {
		ids := make([]string, len(failed))
		for i, f := range failed {
			ids[i] = f.ID
		}
		fmt.Fprintf(n.warn, "shardmgr: warning: %d API nodes could not be scraped, their requests are not counted: %s\n", len(failed), strings.Join(ids, ", "))
	}
	out := make(map[shardkey.KeyRange]int64, len(l.KeyRanges))
	for _, kr := range l.KeyRanges {
		out[kr.Range] = int64(kr.Total())
	}
	return out, nil
}

func (p *planFlags) validate(t *topology.Topology) error {
	if err := p.opts.Validate(); err != nil {
		return usagef("%v", err)
	}
	if p.opts.Region != "" {
		if _, ok := t.Region(p.opts.Region); !ok {
			names := make([]string, len(t.Regions))
			for i, r := range t.Regions {
				names[i] = r.Name
			}
			return usagef("--region %q: no such region (regions: %s)", p.opts.Region, strings.Join(names, ", "))
		}
	}
	return nil
}

// makePlan measures the shards of t and plans from what it found.
func makePlan(ctx context.Context, o *options, env Env, t *topology.Topology, pf *planFlags) (*plan.Plan, error) {
	cfg := shardpool.DefaultConfig()
	cfg.MaxConns = 2
	cfg.ApplicationName = "shardmgr"
	cfg.ConnectTimeout = shardTimeout
	pools, err := shardpool.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	defer pools.Close()
	if err := pools.Apply(ctx, t); err != nil {
		return nil, err
	}
	var requests collect.RequestCounter = collect.NoRequests{}
	if !pf.noRequests {
		c, err := o.consulClient()
		if err != nil {
			return nil, err
		}
		requests = nodeRequests{c: c, warn: env.Stderr}
	}
	stats, err := collect.Collect(ctx, t, pools.Targets(""), collect.Options{Region: pf.opts.Region, PerShardTimeout: pf.shardTimeout, Requests: requests})
	if err != nil {
		return nil, err
	}
	return plan.Make(t, stats, pf.opts)
}

func newPlanCmd(o *options, env Env) *cobra.Command {
	pf := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan [--region r]",
		Short: "Measure the shards and propose splits and moves that even out each region, explained; changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			if err := pf.validate(t); err != nil {
				return err
			}
			p, err := makePlan(ctx, o, env, t, pf)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(env.Stdout, p)
			}
			if err := p.WriteText(env.Stdout); err != nil {
				return err
			}
			if len(p.Steps) > 0 {
				region := ""
				if pf.opts.Region != "" {
					region = " --region " + pf.opts.Region
				}
				fmt.Fprintf(env.Stdout, "\nrun it with: shardmgr rebalance%s --apply --yes\n", region)
			}
			return nil
		},
	}
	pf.bind(cmd)
	return cmd
}

func newRebalanceCmd(o *options, env Env) *cobra.Command {
	pf := &planFlags{}
	var apply, yes bool
	cmd := &cobra.Command{
		Use:   "rebalance [--region r] --apply [--yes]",
		Short: "Make the plan and run it one step at a time, stopping at the first failure",
		Long: `Measure, plan (as 'shardmgr plan' does) and run the plan's steps in order while holding the shard
lock: splits directly on the topology (check-and-set), moves through the online move runner. It stops at
the first step that fails and says what was done before it; every step leaves a valid topology.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !apply {
				return usagef("rebalance changes the topology and moves data: pass --apply (and --yes); 'shardmgr plan' shows what it would do")
			}
			ctx, cancel := withTimeout(cmd, o)
			defer cancel()
			t, _, err := o.load(ctx)
			if err != nil {
				return err
			}
			if err := pf.validate(t); err != nil {
				return err
			}
			if !yes {
				p, err := makePlan(ctx, o, env, t, pf)
				if err != nil {
					return err
				}
				if o.output == "json" {
					if err := writeJSON(env.Stdout, p); err != nil {
						return err
					}
				} else if err := p.WriteText(env.Stdout); err != nil {
					return err
				}
				if len(p.Steps) == 0 {
					return nil
				}
				return usagef("rebalance would run the %d steps above; pass --yes to run them", len(p.Steps))
			}
			pr := newProgressPrinter(env.Stdout, o.output == "json")
			runner, err := o.runner(env, 0, pr.report)
			if err != nil {
				return err
			}
			return withShardLock(ctx, o, "rebalance", func(ctx context.Context, st *topostore.Store, lock *shardlock.Lock) error {
				moves := lockedMover{r: runner, lock: lock}
				// Planned again under the lock, from the topology in force: nothing else reshards meanwhile.
				t, _, err := st.Load(ctx)
				if err != nil {
					return fmt.Errorf("reading the topology: %w (nothing changed)", err)
				}
				p, err := makePlan(ctx, o, env, t, pf)
				if err != nil {
					return fmt.Errorf("%w (nothing changed)", err)
				}
				return runPlan(ctx, o, env, st, p, moves)
			})
		},
	}
	pf.bind(cmd)
	cmd.Flags().BoolVar(&apply, "apply", false, "run the plan (without it, rebalance refuses; see 'shardmgr plan')")
	cmd.Flags().BoolVar(&yes, "yes", false, "run without asking (without it, the plan is shown and nothing runs)")
	return cmd
}

// runPlan runs p's steps in order and reports progress; the first failure stops it with a message
// saying which steps were done.
func runPlan(ctx context.Context, o *options, env Env, st *topostore.Store, p *plan.Plan, moves mover) error {
	type stepResult struct {
		Step    int    `json:"step"`
		Kind    string `json:"kind"`
		Version uint64 `json:"version,omitempty"`
		Error   string `json:"error,omitempty"`
	}
	var done []stepResult
	table := o.output != "json"
	if table {
		if err := p.WriteText(env.Stdout); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout)
	}
	var failure error
	for i, s := range p.Steps {
		label := describeStep(s)
		if table {
			fmt.Fprintf(env.Stdout, "step %d/%d: %s ...\n", i+1, len(p.Steps), label)
		}
		var version uint64
		var err error
		switch s.Kind {
		case plan.KindSplit:
			version, err = splitInStore(ctx, st, s.KeyRange, s.At)
		case plan.KindMove:
			if err = moves.Move(ctx, s.KeyRange, s.Target); err == nil {
				var t *topology.Topology
				t, _, err = st.Load(ctx)
				if err == nil {
					version = t.Version
				}
			}
		}
		if err != nil {
			done = append(done, stepResult{Step: i + 1, Kind: string(s.Kind), Error: err.Error()})
			failure = fmt.Errorf("rebalance stopped at step %d of %d (%s): %w; %s", i+1, len(p.Steps), label, err, whatWasDone(p, i))
			break
		}
		done = append(done, stepResult{Step: i + 1, Kind: string(s.Kind), Version: version})
		if table {
			fmt.Fprintf(env.Stdout, "step %d/%d: done (topology version %d)\n", i+1, len(p.Steps), version)
		}
	}
	if !table {
		if err := writeJSON(env.Stdout, map[string]any{"plan": p, "steps": done}); err != nil && failure == nil {
			return err
		}
	} else if failure == nil {
		if len(p.Steps) == 0 {
			fmt.Fprintln(env.Stdout, "nothing to do: every planned region is balanced")
		} else {
			fmt.Fprintf(env.Stdout, "rebalance done: %d steps\n", len(p.Steps))
		}
	}
	return failure
}

func describeStep(s plan.Step) string {
	if s.Kind == plan.KindSplit {
		return fmt.Sprintf("split %s on %s at %s", s.KeyRange, s.Shard, strings.TrimSuffix(shardkey.KeyRange{Start: uint64(s.At)}.String(), "-"))
	}
	return fmt.Sprintf("move %s from %s to %s", s.KeyRange, s.Shard, s.Target)
}

// whatWasDone says which steps before step i ran, for the failure message.
func whatWasDone(p *plan.Plan, i int) string {
	if i == 0 {
		return "no step was done; the topology is as it was"
	}
	names := make([]string, i)
	for j := range i {
		names[j] = fmt.Sprintf("%d (%s)", j+1, describeStep(p.Steps[j]))
	}
	return fmt.Sprintf("done before it: step %s; the topology is valid; run 'shardmgr plan' to see what is left", strings.Join(names, ", "))
}
