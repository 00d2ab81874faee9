// Command shardmgr is the SRE's CLI for Meridian's shards: topology, status, migrations, adding and
// removing shards, splits, the rebalancing plan and its application.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/8thdegree/meridian/shardmgr/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
