// Package matchctl is the command line of the matching engine's models (cmd/matchctl): train a
// region's ranking model from what its lists led to, evaluate a version against the serving one on a
// time-based holdout (NDCG@10 and the fairness gate), promote it only when it is better and passes,
// roll back to any earlier version, and list the models. It reads the topology from Consul and works
// on the region's shards directly, as shardmgr does.
package matchctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/api/internal/matching"
	"github.com/8thdegree/meridian/api/internal/matching/learn"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Env is what the command reads and writes.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

type options struct {
	consulAddr, tokenFile, key, region, output, note string
	timeout                                          time.Duration
	eta, holdout                                     float64
	since                                            time.Duration
}

// Run runs the command with args and returns its exit code: 0 done, 1 failed, 2 bad usage, 3 a model
// the evaluation refuses to promote.
func Run(ctx context.Context, args []string, env Env) int {
	o := &options{}
	root := &cobra.Command{Use: "matchctl", Short: "Train, evaluate, promote and roll back the matching engine's ranking models",
		SilenceUsage: true, SilenceErrors: true}
	def := func(name, fallback string) string {
		if v := env.Getenv(name); v != "" {
			return v
		}
		return fallback
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.consulAddr, "consul", def("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), "Consul HTTP address (env CONSUL_HTTP_ADDR)")
	pf.StringVar(&o.tokenFile, "consul-token-file", env.Getenv("CONSUL_HTTP_TOKEN_FILE"), "file holding a Consul ACL token that reads the topology (env CONSUL_HTTP_TOKEN_FILE)")
	pf.StringVar(&o.key, "key", def("MERIDIAN_TOPOLOGY_KEY", topostore.DefaultKey), "Consul KV key of the topology (env MERIDIAN_TOPOLOGY_KEY)")
	pf.StringVar(&o.region, "region", "", "the region whose models to work on (required)")
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&o.timeout, "timeout", 5*time.Minute, "deadline for the whole command")
	pf.Float64Var(&o.eta, "eta", 1, "position-bias exponent of the examination model 1/position^eta")
	pf.Float64Var(&o.holdout, "holdout", 0.2, "share of the newest lists kept out of training to evaluate on")
	pf.DurationVar(&o.since, "since", 90*24*time.Hour, "learn from lists served this long ago at most")
	train := &cobra.Command{Use: "train", Short: "Train a new version on the region's outcomes and evaluate it (it does not serve until promoted)",
		Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
			return o.with(cmd, env, func(ctx context.Context, t *matching.Trainer) error {
				ev, err := t.Train(ctx, learn.DefaultTrainOptions(), o.note)
				if err != nil {
					return err
				}
				return o.printEvaluation(env.Stdout, "trained", ev)
			})
		}}
	train.Flags().StringVar(&o.note, "note", "", "a note kept with the model")
	version := func(use, short string, run func(ctx context.Context, t *matching.Trainer, v int) error) *cobra.Command {
		return &cobra.Command{Use: use + " VERSION", Short: short, Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[0])
			if err != nil || v < 0 {
				return usageError{fmt.Errorf("VERSION %q is not a model version", args[0])}
			}
			return o.with(cmd, env, func(ctx context.Context, t *matching.Trainer) error { return run(ctx, t, v) })
		}}
	}
	evaluate := version("evaluate", "Compare a version with the serving model on the current holdout", func(ctx context.Context, t *matching.Trainer, v int) error {
		ev, err := t.Evaluate(ctx, v)
		if err != nil {
			return err
		}
		return o.printEvaluation(env.Stdout, "evaluated", ev)
	})
	promote := version("promote", "Serve a version if it is better than the serving one and passes the fairness gate", func(ctx context.Context, t *matching.Trainer, v int) error {
		ev, err := t.Promote(ctx, v)
		if perr := o.printEvaluation(env.Stdout, "promote", ev); perr != nil {
			return perr
		}
		if err == nil {
			fmt.Fprintf(env.Stdout, "version %d serves in %s\n", v, o.region)
		}
		return err
	})
	rollback := version("rollback", "Serve an earlier version again (0: the hand-set weights), without evaluation", func(ctx context.Context, t *matching.Trainer, v int) error {
		if err := t.Rollback(ctx, v); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "version %d serves in %s\n", v, o.region)
		return nil
	})
	models := &cobra.Command{Use: "models", Short: "List the region's models", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return o.with(cmd, env, func(ctx context.Context, t *matching.Trainer) error {
			ms, err := t.Models(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(env.Stdout, ms)
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tSERVING\tTRAINED\tNDCG@10\tSERVING NDCG@10\tWEIGHTS\tNOTE")
			for _, m := range ms {
				w, _ := json.Marshal(m.Weights)
				fmt.Fprintf(tw, "%d\t%v\t%s\t%v\t%v\t%s\t%s\n", m.Version, m.Serving, m.TrainedAt.Format(time.RFC3339),
					m.Figures["ndcg@10"], m.Figures["serving_ndcg@10"], w, m.Note)
			}
			return tw.Flush()
		})
	}}
	root.AddCommand(train, evaluate, promote, rollback, models)
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, matching.ErrNotPromotable):
		fmt.Fprintln(env.Stderr, "matchctl:", err)
		return 3
	case errors.As(err, &ue) || isCobraUsage(err):
		fmt.Fprintln(env.Stderr, "matchctl:", err)
		return 2
	}
	fmt.Fprintln(env.Stderr, "matchctl:", err)
	return 1
}

type usageError struct{ error }

// isCobraUsage reports cobra's own usage errors (an unknown command or flag, wrong arguments).
func isCobraUsage(err error) bool {
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument"} {
		if strings.Contains(err.Error(), p) {
			return true
		}
	}
	return false
}

// with loads the topology, opens the region's shards and runs fn with the region's trainer.
func (o *options) with(cmd *cobra.Command, env Env, fn func(ctx context.Context, t *matching.Trainer) error) error {
	if o.region == "" {
		return usageError{errors.New("--region is required")}
	}
	if o.output != "table" && o.output != "json" {
		return usageError{fmt.Errorf("--output %q: must be table or json", o.output)}
	}
	if o.holdout <= 0 || o.holdout >= 1 || o.eta < 0 {
		return usageError{errors.New("--holdout must be between 0 and 1 and --eta at least 0")}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	cfg := consul.DefaultConfig()
	cfg.Address = o.consulAddr
	if o.tokenFile != "" {
		if _, err := os.ReadFile(o.tokenFile); err != nil {
			return usageError{fmt.Errorf("--consul-token-file: %w", err)}
		}
		cfg.TokenFile = o.tokenFile
	}
	client, err := consul.NewClient(cfg)
	if err != nil {
		return usageError{fmt.Errorf("--consul %q: %w", o.consulAddr, err)}
	}
	topo, _, err := topostore.NewStore(client, o.key).Load(ctx)
	if err != nil {
		return fmt.Errorf("reading the topology from Consul at %s: %w", o.consulAddr, err)
	}
	pcfg := shardpool.DefaultConfig()
	pcfg.MaxConns, pcfg.ApplicationName = 4, "matchctl"
	pools, err := shardpool.New(pcfg, nil)
	if err != nil {
		return err
	}
	defer pools.Close()
	if err := pools.Apply(ctx, topo); err != nil {
		return err
	}
	t, err := matching.NewTrainer(pools, pools.Table(), o.region)
	if err != nil {
		return usageError{err}
	}
	t.Eta, t.Holdout, t.Since = o.eta, o.holdout, time.Now().Add(-o.since)
	return fn(ctx, t)
}

func (o *options) printEvaluation(w io.Writer, what string, ev matching.Evaluation) error {
	if o.output == "json" {
		return writeJSON(w, ev)
	}
	c := ev.Comparison
	fmt.Fprintf(w, "%s: version %d against the serving version %d in %s\n", what, ev.Version, ev.Serving, o.region)
	fmt.Fprintf(w, "  weights: similarity %.3f, skill_coverage %.3f, rating %.3f, price_fit %.3f, availability %.3f\n",
		ev.Weights.Similarity, ev.Weights.SkillCoverage, ev.Weights.Rating, ev.Weights.PriceFit, ev.Weights.Availability)
	fmt.Fprintf(w, "  examples: %d to train, %d held out (%d graded lists)\n", ev.Train, ev.Holdout, c.Lists)
	fmt.Fprintf(w, "  NDCG@10: candidate %.4f, serving %.4f; better: %v; fairness gate: %v\n", c.CandidateNDCG, c.ServingNDCG, c.Better, c.GatePassed)
	fmt.Fprintf(w, "  promotable: %v (%s)\n", c.Promote, c.Reason)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
