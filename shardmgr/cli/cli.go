package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/spf13/cobra"

	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // the command ran and failed (a shard down, a conflict, a refused document)
	ExitUsage = 2 // the command line itself is wrong
)

// usageError marks errors in the command line, which exit with ExitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Env is what the commands need from the process: streams and the environment.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Stdin answers confirmations when it is a terminal; nil: destructive steps need --yes.
	Stdin io.Reader
	// Exit ends the process (MERIDIAN_FAULT); nil: os.Exit.
	Exit func(int)
}

type options struct {
	consulAddr string
	// consulTokenFile and consulToken are the Consul ACL token's file and the token itself.
	consulTokenFile string
	consulToken     string
	key             string
	output          string
	timeout         time.Duration
	verbose         bool
	// lockKey is the shard lock (shardlock) and movesPrefix the move records' KV prefix.
	lockKey     string
	movesPrefix string
	// pinsPrefix is the pin records' KV prefix.
	pinsPrefix string
	// consul is the command's one Consul client (consulClient), over transport.
	consul    *consul.Client
	transport *http.Transport
}

// Run executes the shardmgr command line and returns the process exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	root, o := newRoot(env)
	// One command, one Consul client: its idle connections are closed when the command ends, so a
	// process that runs many commands (tests, an embedding tool) does not pile them up against
	// Consul's per-client connection limit.
	defer o.closeConsul()
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "shardmgr: %v\n", err)
	if msg := err.Error(); strings.Contains(msg, "Permission denied") || strings.Contains(msg, "ACL not found") {
		fmt.Fprintln(env.Stderr, "Consul refused the token: shardmgr needs one with the shardmgr policy, e.g. "+
			"export CONSUL_HTTP_TOKEN_FILE=.local-cluster/consul/tokens/shardmgr.token for the local cluster (docs/security.md#consul).")
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintln(env.Stderr, "Run 'shardmgr --help' for usage.")
		return ExitUsage
	}
	return ExitError
}

// isCobraUsageError recognises the flag and argument errors cobra returns unwrapped.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(env Env) (*cobra.Command, *options) {
	o := &options{consulToken: env.Getenv("CONSUL_HTTP_TOKEN")}
	defConsul := env.Getenv("CONSUL_HTTP_ADDR")
	if defConsul == "" {
		defConsul = "127.0.0.1:8500"
	}
	defKey := env.Getenv("MERIDIAN_TOPOLOGY_KEY")
	if defKey == "" {
		defKey = topostore.DefaultKey
	}
	defLock := env.Getenv("MERIDIAN_LOCK_KEY")
	if defLock == "" {
		defLock = shardlock.DefaultKey
	}
	defMoves := env.Getenv("MERIDIAN_MOVES_PREFIX")
	if defMoves == "" {
		defMoves = move.DefaultPrefix
	}
	defPins := env.Getenv("MERIDIAN_PINS_PREFIX")
	if defPins == "" {
		defPins = move.DefaultPinPrefix
	}
	root := &cobra.Command{
		Use:           "shardmgr",
		Short:         "Inspect and operate Meridian's shards and topology",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "table" && o.output != "json" {
				return usagef("--output must be table or json, got %q", o.output)
			}
			if o.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			if !strings.HasSuffix(o.movesPrefix, "/") {
				return usagef("--moves-prefix %q must end with /", o.movesPrefix)
			}
			if !strings.HasSuffix(o.pinsPrefix, "/") || o.pinsPrefix == o.movesPrefix {
				return usagef("--pins-prefix %q must end with / and differ from --moves-prefix", o.pinsPrefix)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.consulAddr, "consul", defConsul, "Consul HTTP address (env CONSUL_HTTP_ADDR)")
	pf.StringVar(&o.consulTokenFile, "consul-token-file", env.Getenv("CONSUL_HTTP_TOKEN_FILE"), "file holding the Consul ACL token, with the shardmgr role's policy (env CONSUL_HTTP_TOKEN_FILE; or the token in CONSUL_HTTP_TOKEN)")
	pf.StringVar(&o.key, "key", defKey, "Consul KV key of the topology document (env MERIDIAN_TOPOLOGY_KEY)")
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline for the whole command")
	pf.BoolVarP(&o.verbose, "verbose", "v", false, "log progress to stderr")
	pf.StringVar(&o.lockKey, "lock-key", defLock, "Consul KV key of the shard lock that migrate and move take (env MERIDIAN_LOCK_KEY)")
	pf.StringVar(&o.movesPrefix, "moves-prefix", defMoves, "Consul KV prefix of the move records (env MERIDIAN_MOVES_PREFIX)")
	pf.StringVar(&o.pinsPrefix, "pins-prefix", defPins, "Consul KV prefix of the pin records (env MERIDIAN_PINS_PREFIX)")
	root.AddCommand(newTopologyCmd(o, env), newStatusCmd(o, env), newMigrateCmd(o, env), newResidencyCmd(o, env), newVerifyCmd(o, env))
	root.AddCommand(newMoveCmd(o, env), newMovesCmd(o, env), newPinCmd(o, env), newPinsCmd(o, env))
	root.AddCommand(newShardCmd(o, env), newSplitCmd(o, env), newPlanCmd(o, env), newRebalanceCmd(o, env))
	return root, o
}

func (o *options) logger(env Env) *slog.Logger {
	if !o.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(env.Stderr, nil))
}

func (o *options) store() (*topostore.Store, error) {
	client, err := o.consulClient()
	if err != nil {
		return nil, err
	}
	return topostore.NewStore(client, o.key), nil
}

// consulClient returns the command's Consul client, made on first use.
func (o *options) consulClient() (*consul.Client, error) {
	if o.consul != nil {
		return o.consul, nil
	}
	cfg := consul.DefaultConfig()
	cfg.Address = o.consulAddr
	if o.consulToken != "" {
		cfg.Token = o.consulToken
	}
	// The file wins over the token, as in Consul's own CLI.
	if o.consulTokenFile != "" {
		if _, err := os.ReadFile(o.consulTokenFile); err != nil {
			return nil, usagef("--consul-token-file (env CONSUL_HTTP_TOKEN_FILE): %v", err)
		}
		cfg.TokenFile = o.consulTokenFile
	}
	o.transport = cleanhttp.DefaultPooledTransport()
	cfg.Transport = o.transport
	c, err := consul.NewClient(cfg)
	if err != nil {
		return nil, usagef("--consul %q: %v", o.consulAddr, err)
	}
	o.consul = c
	return c, nil
}

func (o *options) closeConsul() {
	if o.transport != nil {
		o.transport.CloseIdleConnections()
	}
}

// load reads the topology in force from Consul.
func (o *options) load(ctx context.Context) (*topology.Topology, uint64, error) {
	st, err := o.store()
	if err != nil {
		return nil, 0, err
	}
	t, idx, err := st.Load(ctx)
	if errors.Is(err, topostore.ErrNotFound) {
		return nil, 0, fmt.Errorf("no topology at %s on %s: create it with 'shardmgr topology init --from <file>'", o.key, o.consulAddr)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading the topology from Consul at %s: %w", o.consulAddr, err)
	}
	return t, idx, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func withTimeout(cmd *cobra.Command, o *options) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), o.timeout)
}
