// Package cmd_test checks what the commands under cmd/ have in common: none of them lets glog's
// flags onto its command line.
//
// pkg/shardkey imports vitess.io/vitess/go/vt/key, which pulls in github.com/golang/glog, whose
// init registers -v, -vmodule, -log_dir, -logtostderr and more on the global flag.CommandLine.
// Our commands never parse flag.CommandLine (router uses a FlagSet of its own, shardmgr and
// meridian-local and matchctl their own flag sets, api reads only its environment), so those flags stay
// inert. This test builds the real binaries and holds them to that.
package cmd_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// glogFlags are the flags github.com/golang/glog v1 registers on flag.CommandLine.
var glogFlags = []string{
	"log_dir", "log_link", "logbuflevel", "vmodule", "log_backtrace_at",
	"logtostderr", "alsologtostderr", "stderrthreshold",
}

// glogVUsage is the usage of glog's -v, told apart from our own -v (shardmgr's and meridian-local's
// verbose switch) by its text.
const glogVUsage = "log level for V logs"

var commands = []struct {
	name string
	help []string // asks for usage
	// unknown is an argument list with a glog flag that must be refused as undefined; nil for api,
	// which takes no arguments at all.
	unknown []string
}{
	{"router", []string{"-help"}, []string{"-log_dir=/nonexistent", "-region", "us-east"}},
	{"api", []string{"-help", "-logtostderr"}, nil},
	{"shardmgr", []string{"--help"}, []string{"--logtostderr", "status"}},
	{"meridian-local", []string{"--help"}, []string{"--log_dir=/nonexistent", "down"}},
	{"matchctl", []string{"--help"}, []string{"--logtostderr", "models", "--region", "us-east"}},
}

func TestNoGlogFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every command")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator))
	for _, c := range commands {
		build.Args = append(build.Args, "./"+c.name)
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Without glog in the binary there is nothing to guard; say so rather than pass silently.
	deps, err := exec.Command("go", "list", "-deps", "./router").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if !strings.Contains(string(deps), "github.com/golang/glog\n") {
		t.Log("glog is no longer linked into cmd/router: this test guards against its return")
	}

	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			code, out := runCmd(t, filepath.Join(bin, c.name), c.help...)
			if code == 2 && strings.Contains(out, "Usage of "+c.name) && strings.Contains(out, "-logtostderr") {
				t.Fatalf("%s %s printed the global flag set's usage:\n%s", c.name, strings.Join(c.help, " "), out)
			}
			for _, f := range glogFlags {
				if strings.Contains(out, "-"+f) {
					t.Errorf("%s %s mentions glog's -%s:\n%s", c.name, strings.Join(c.help, " "), f, out)
				}
			}
			if strings.Contains(out, glogVUsage) {
				t.Errorf("%s %s lists glog's -v:\n%s", c.name, strings.Join(c.help, " "), out)
			}
			if c.unknown == nil {
				return
			}
			code, out = runCmd(t, filepath.Join(bin, c.name), c.unknown...)
			if code == 0 || !strings.Contains(out, "log") || !(strings.Contains(out, "not defined") || strings.Contains(out, "unknown flag")) {
				t.Errorf("%s %s = exit %d, want the glog flag refused as unknown:\n%s", c.name, strings.Join(c.unknown, " "), code, out)
			}
		})
	}
}

// runCmd runs a command with an empty environment (so api stops at its configuration check, and
// nothing finds a server to talk to) and returns its exit code and combined output.
func runCmd(t *testing.T, path string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit) && ctx.Err() == nil:
		return exit.ExitCode(), out.String()
	default:
		t.Fatalf("%s %s: %v\n%s", path, strings.Join(args, " "), err, out.String())
		return 0, ""
	}
}
