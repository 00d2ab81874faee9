// Package testenv gives integration tests the real PostgreSQL, Redis and Consul, started by
// deploy/local on private ports in a private temporary folder, once per test process.
//
// Use it from TestMain so that the servers stop when the tests end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := testenv.Postgres(t).NewDatabase(t) // fresh database, dropped after the test
//		addr := testenv.Redis(t)                  // shared Redis: use keys unique to the test
//		consul := testenv.Consul(t)               // shared agent: use a KV prefix unique to the test
//		...
//	}
//
// Tests that take Consul away and bring it back use NewConsul, which gives them an agent of
// their own.
//
// Consul runs as the local cluster runs it: ACLs on, default deny, a token per role (see
// deploy/local's ConsulRoles). A client without a token can do nothing, so a test talks to Consul
// as the component it plays, with ConsulClient:
//
//	router := testenv.ConsulClient(t, consul, local.RoleRouter)     // reads topology and health
//	node := testenv.ConsulClient(t, consul, local.RoleNode)         // and registers services
//	shardmgr := testenv.ConsulClient(t, consul, local.RoleShardmgr) // writes KV, holds locks
//
// and hands a process under test the role's token file (consul.TokenFile(role)) as
// CONSUL_HTTP_TOKEN_FILE. Never consul.NewClient(&consul.Config{Address: agent.HTTPAddr()}): that
// client is anonymous and denied. Tests pick their own KV keys and service names, so the roles'
// policies here cover every key and every service (TestConsulScope); what each role may do (read,
// register services, write KV, create sessions) is the cluster's. The cluster's exact scopes are
// tested in deploy/local. With -short every helper skips the test; without it, a server that cannot start
// (say, a binary that is not installed) fails the test with a message that says what to install.
//
// The servers are shared by every test in the process, so this package holds process-wide state
// (one harness value); that is the point of it, and the only such state in the module. A test
// binary that crashes or times out never reaches Main's cleanup, so a watchdog process (a small
// shell loop) stops the servers and removes the folder when the test process is gone.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
)

const startTimeout = 3 * time.Minute

// harness is the process's set of servers.
type harness struct {
	rootOnce sync.Once
	root     string
	rootErr  error
	log      *slog.Logger

	pgOnce sync.Once
	pg     *PG
	pgErr  error

	redisOnce sync.Once
	redis     *local.Redis
	redisErr  error

	consulOnce sync.Once
	consul     *local.Consul
	consulErr  error

	mu        sync.Mutex
	dedicated map[*local.Consul]bool // NewConsul agents not yet stopped by their test's cleanup

	seq atomic.Int64 // for unique database and folder names
}

// env is the process-wide harness; see the package comment for why it exists.
var env = &harness{dedicated: map[*local.Consul]bool{}}

// Main runs the tests, stops every server this process started, removes their folder, and exits
// with the tests' exit code. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := env.shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func (h *harness) logger() *slog.Logger {
	level := slog.LevelWarn
	switch strings.ToLower(os.Getenv("MERIDIAN_TESTENV_LOG")) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "testenv")
}

// rootDir creates the process's folder (once) and the watchdog that cleans it up.
func (h *harness) rootDir() (string, error) {
	h.rootOnce.Do(func() {
		h.log = h.logger()
		dir, err := os.MkdirTemp("", "meridian-testenv-")
		if err != nil {
			h.rootErr = fmt.Errorf("testenv: temp folder: %w", err)
			return
		}
		// 0711: PostgreSQL runs as the postgres user when we are root and must reach its folder.
		if err := os.Chmod(dir, 0o711); err != nil {
			h.rootErr = fmt.Errorf("testenv: %w", err)
			return
		}
		h.root = dir
		if err := startWatchdog(os.Getpid(), dir); err != nil {
			h.log.Warn("no watchdog: servers outlive a crashed test process", "err", err)
		}
	})
	return h.root, h.rootErr
}

// watchdogScript waits for the test process to go away, then stops what is left in its folder
// (nothing, after a normal Main) and removes it. Postmasters get SIGINT (fast shutdown), the
// others SIGTERM, and whatever still runs 10 s later SIGKILL. A pid file that outlived its
// process (a server that crashed too) may name a reused pid; within the seconds this runs, and
// for pids in our own folder, that risk is accepted.
const watchdogScript = `parent=$1; root=$2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
[ -d "$root" ] || exit 0
all="$root/*/postmaster.pid $root/*/redis.pid $root/*/consul.pid"
sig() { n=0; for f in $2; do [ -f "$f" ] && kill -"$1" "$(head -n 1 "$f")" 2>/dev/null && n=$((n+1)); done; [ $n -gt 0 ]; }
sig INT "$root/*/postmaster.pid"
sig TERM "$root/*/redis.pid $root/*/consul.pid"
i=0; while [ $i -lt 100 ] && sig 0 "$all"; do sleep 0.1; i=$((i+1)); done
sig KILL "$all"
rm -rf "$root"
`

func startWatchdog(parent int, root string) error {
	cmd := exec.Command("sh", "-c", watchdogScript, "meridian-testenv-watchdog", strconv.Itoa(parent), root)
	// Its own session, and no stdout/stderr: `go test` waits for every holder of the test
	// binary's output pipe, and must not wait for the watchdog.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // it outlives us; reap it if it does not
	return nil
}

func (h *harness) shutdown() error {
	if h.root == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	h.mu.Lock()
	for c := range h.dedicated {
		errs = append(errs, c.Stop(ctx))
	}
	clear(h.dedicated)
	h.mu.Unlock()
	if h.consul != nil {
		errs = append(errs, h.consul.Stop(ctx))
	}
	if h.redis != nil {
		errs = append(errs, h.redis.Stop(ctx))
	}
	if h.pg != nil {
		errs = append(errs, h.pg.srv.Stop(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		// Keep the folder: its logs explain the failure, and the watchdog removes it.
		return fmt.Errorf("stopping servers (folder %s kept): %w", h.root, err)
	}
	return os.RemoveAll(h.root)
}

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("testenv: needs real servers; skipped with -short")
	}
}

// PG is the process's PostgreSQL cluster.
type PG struct {
	srv *local.Postgres
}

// Postgres returns the process's PostgreSQL 15 cluster, starting it on first use.
func Postgres(t testing.TB) *PG {
	t.Helper()
	skipShort(t)
	env.pgOnce.Do(func() { env.pg, env.pgErr = env.startPostgres() })
	if env.pgErr != nil {
		t.Fatalf("testenv: cannot start PostgreSQL: %v", env.pgErr)
	}
	return env.pg
}

func (h *harness) startPostgres() (*PG, error) {
	root, err := h.rootDir()
	if err != nil {
		return nil, err
	}
	cfg := local.DefaultPostgresConfig(filepath.Join(root, "pg"), 0)
	// Durability of the test cluster itself is not under test (a crash loses the folder
	// anyway); without fsync, CREATE DATABASE per test costs milliseconds instead of a flush.
	cfg.ExtraSettings = map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, err := local.StartPostgres(ctx, cfg, h.log)
	if err != nil {
		return nil, err
	}
	return &PG{srv: srv}, nil
}

// Server returns the cluster, for DSNs of databases the test manages itself.
func (pg *PG) Server() *local.Postgres { return pg.srv }

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// NewDatabase creates a database with a name unique in this process (derived from the test's
// name, so that a leftover is easy to trace) and returns its DSN. The database is dropped, with
// its connections, when the test ends.
func (pg *PG) NewDatabase(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("t_%s_%d", base, env.seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.srv.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pg.srv.DropDatabase(ctx, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return pg.srv.DSN(name)
}

// Redis returns the address of the process's Redis server, starting it on first use.
func Redis(t testing.TB) string {
	t.Helper()
	skipShort(t)
	env.redisOnce.Do(func() {
		root, err := env.rootDir()
		if err != nil {
			env.redisErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		env.redis, env.redisErr = local.StartRedis(ctx, local.DefaultRedisConfig(filepath.Join(root, "redis"), 0), env.log)
	})
	if env.redisErr != nil {
		t.Fatalf("testenv: cannot start Redis: %v", env.redisErr)
	}
	return env.redis.Addr()
}

// Consul returns the process's shared Consul agent, starting it on first use. Do not stop or
// restart it: other tests use it. Use NewConsul for that.
func Consul(t testing.TB) *local.Consul {
	t.Helper()
	skipShort(t)
	env.consulOnce.Do(func() { env.consul, env.consulErr = env.startConsul("consul") })
	if env.consulErr != nil {
		t.Fatalf("testenv: cannot start Consul: %v", env.consulErr)
	}
	return env.consul
}

// NewConsul starts an agent for this test alone, which it may stop and restart at will. It is
// stopped, and its data removed, when the test ends.
func NewConsul(t testing.TB) *local.Consul {
	t.Helper()
	skipShort(t)
	name := fmt.Sprintf("consul-%d", env.seq.Add(1))
	c, err := env.startConsul(name)
	if err != nil {
		t.Fatalf("testenv: cannot start Consul: %v", err)
	}
	env.mu.Lock()
	env.dedicated[c] = true
	env.mu.Unlock()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("testenv: %v", err)
			return
		}
		env.mu.Lock()
		delete(env.dedicated, c)
		env.mu.Unlock()
		_ = os.RemoveAll(c.Config().DataDir)
	})
	return c
}

func (h *harness) startConsul(name string) (*local.Consul, error) {
	root, err := h.rootDir()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cfg := local.DefaultConsulConfig(filepath.Join(root, name))
	cfg.Roles = local.ConsulRoles(TestConsulScope)
	return local.StartConsul(ctx, cfg, h.log)
}

// TestConsulScope is the scope of the test agents' roles: every key and every service, one node
// role (local.RoleNode) for every service, since tests choose their own names.
var TestConsulScope = local.ConsulScope{NodeServices: map[string]string{local.RoleNode: ""}}

// ConsulClient returns a client of agent c (Consul or NewConsul) that authenticates as role:
// local.RoleRouter, local.RoleNode, local.RoleShardmgr, or local.RoleManagement for set-up that
// no component does (ACL changes). It fails the test when c has no such role.
func ConsulClient(t testing.TB, c *local.Consul, role string) *consul.Client {
	t.Helper()
	client, err := c.Client(role)
	if err != nil {
		t.Fatalf("testenv: consul client for %s: %v", role, err)
	}
	return client
}
