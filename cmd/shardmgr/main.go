// Command shardmgr is the SRE's CLI for Meridian's shards: topology, status, migrations, adding and
// removing shards, splits, online moves, the rebalancing plan and its application, verification,
// pinning a user to a region and the residency audit.
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
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Stdin: os.Stdin, Exit: os.Exit})
	stop()
	os.Exit(code)
}
