// Command matchctl trains, evaluates, promotes and rolls back the matching engine's ranking models of
// a region (docs/matching.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/8thdegree/meridian/api/matchctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := matchctl.Run(ctx, os.Args[1:], matchctl.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
