// Command meridian-local runs a whole three-region Meridian on this machine: `up` starts (or reuses)
// PostgreSQL, Redis and Consul, creates the shards, applies migrations and writes the topology; `down`
// stops it all, keeping the data for the next `up`.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/deploy/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "meridian-local:", err)
		stop()
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	defDir := os.Getenv("MERIDIAN_HOME")
	if defDir == "" {
		defDir = ".local-cluster"
	}
	cfg := localcluster.DefaultConfig(defDir)
	var verbose bool
	var timeout time.Duration
	logger := func() *slog.Logger {
		if !verbose {
			return nil
		}
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	root := &cobra.Command{
		Use:           "meridian-local",
		Short:         "Run a three-region Meridian on this machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&cfg.Dir, "dir", cfg.Dir, "folder for every server's data and logs (env MERIDIAN_HOME)")
	pf.StringVar(&cfg.TopologyFile, "topology", cfg.TopologyFile, "the local topology file")
	pf.IntVar(&cfg.ConsulHTTPPort, "consul-http-port", cfg.ConsulHTTPPort, "Consul HTTP port")
	pf.BoolVarP(&verbose, "verbose", "v", false, "log every step")
	pf.DurationVar(&timeout, "timeout", 3*time.Minute, "deadline for the command")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start (or reuse) every server, create shards, migrate, write the topology",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return localcluster.Up(ctx, cfg, logger(), cmd.OutOrStdout())
		},
	}
	up.Flags().BoolVar(&cfg.ResetTopology, "reset-topology", false, "replace a topology already in Consul with the file's")
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop every server (data is kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return localcluster.Down(ctx, cfg, logger(), cmd.OutOrStdout())
		},
	}
	root.AddCommand(up, down)
	return root
}
