package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/deploy/local"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgresIsSharedAndDatabasesAreFresh(t *testing.T) {
	pg := Postgres(t)
	if Postgres(t) != pg {
		t.Fatal("second call started a second cluster")
	}
	ctx := context.Background()
	var names []string
	t.Run("first", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var name string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id bigint PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		// An open connection must not stop the cleanup's DROP DATABASE.
	})
	t.Run("second", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var name string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		// Fresh: the first test's table is not here.
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id bigint PRIMARY KEY)"); err != nil {
			t.Errorf("table from another test's database is visible: %v", err)
		}
	})
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("database names %v are not distinct", names)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "t_testpostgresissharedanddatabasesarefresh_") {
			t.Errorf("database name %q does not say which test made it", n)
		}
	}
	conn, err := pgx.Connect(ctx, pg.Server().DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d test databases survived their tests' cleanup", left)
	}
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil || walLevel != "logical" {
		t.Errorf("wal_level = %q, %v", walLevel, err)
	}
}

func TestRedisIsShared(t *testing.T) {
	addr := Redis(t)
	if Redis(t) != addr {
		t.Fatal("second call returned another server")
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if err := c.Set(ctx, t.Name(), "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, t.Name()).Result(); err != nil || v != "1" {
		t.Fatalf("GET = %q, %v", v, err)
	}
}

func TestConsulIsShared(t *testing.T) {
	c := Consul(t)
	if Consul(t) != c {
		t.Fatal("second call started a second agent")
	}
	client := ConsulClient(t, c, local.RoleShardmgr)
	if _, err := client.KV().Put(&api.KVPair{Key: t.Name(), Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	leader, err := client.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader %q, %v", leader, err)
	}
}

// TestConsulRolesAreEnforced: the test agents deny as the cluster's does, so that a test whose
// component lacks a permission fails here as it would in the cluster.
func TestConsulRolesAreEnforced(t *testing.T) {
	c := Consul(t)
	key := "testenv/" + t.Name()
	shardmgr := ConsulClient(t, c, local.RoleShardmgr)
	if _, err := shardmgr.KV().Put(&api.KVPair{Key: key, Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = shardmgr.KV().Delete(key, nil) })
	denied := func(what string, err error) {
		t.Helper()
		var se api.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusForbidden {
			t.Errorf("%s: %v, want 403", what, err)
		}
	}
	anon, err := api.NewClient(&api.Config{Address: c.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = anon.KV().Get(key, nil)
	denied("anonymous read", err)
	for _, role := range []string{local.RoleRouter, local.RoleNode} {
		client := ConsulClient(t, c, role)
		if pair, _, err := client.KV().Get(key, nil); err != nil || pair == nil {
			t.Errorf("%s read: %v, %v", role, pair, err)
		}
		_, err := client.KV().Put(&api.KVPair{Key: key, Value: []byte("y")}, nil)
		denied(role+" write", err)
	}
	reg := &api.AgentServiceRegistration{ID: t.Name(), Name: "testenv-" + t.Name(), Port: 1}
	denied("router registers a service", ConsulClient(t, c, local.RoleRouter).Agent().ServiceRegister(reg))
	node := ConsulClient(t, c, local.RoleNode)
	if err := node.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("node registers a service: %v", err)
	}
	if err := node.Agent().ServiceDeregister(reg.ID); err != nil {
		t.Errorf("node deregisters: %v", err)
	}
}

func TestNewConsulRestartKeepsKV(t *testing.T) {
	c := NewConsul(t)
	if c == Consul(t) {
		t.Fatal("NewConsul returned the shared agent")
	}
	kv := ConsulClient(t, c, local.RoleShardmgr).KV()
	if _, err := kv.Put(&api.KVPair{Key: "topology", Value: []byte("v7")}, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kv.Get("topology", nil); err == nil {
		t.Fatal("Consul still answers after Stop")
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	pair, _, err := kv.Get("topology", nil)
	if err != nil || pair == nil || string(pair.Value) != "v7" {
		t.Fatalf("after restart: %+v, %v; want v7", pair, err)
	}
}

// The tests below run this test binary again as a child that starts every server and then either
// exits normally through Main or dies without cleanup, and check that nothing outlives it.

const childEnv = "MERIDIAN_TESTENV_CHILD"

// TestChildStartsServers is the child's body; it does nothing unless run by the tests below.
func TestChildStartsServers(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("helper run only as a child process")
	}
	pg := Postgres(t)
	NewConsul(t) // dedicated agents too are stopped by Main or the watchdog
	c := Consul(t)
	Redis(t)
	pids := []string{
		pidOf(t, filepath.Join(pg.Server().DataDir(), "postmaster.pid")),
		pidOf(t, filepath.Join(env.redis.Config().Dir, "redis.pid")),
		pidOf(t, filepath.Join(c.Config().DataDir, "consul.pid")),
	}
	fmt.Printf("ROOT=%s\nPIDS=%s\n", env.root, strings.Join(pids, ","))
	if mode == "crash" {
		os.Exit(3) // no cleanups, no Main: only the watchdog is left to clean up
	}
}

func pidOf(t *testing.T, pidFile string) string {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

func runChild(t *testing.T, mode string) (root string, pids []int) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real servers; skipped with -short")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildStartsServers$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// WaitDelay: if the watchdog held our pipe (it must not), Wait would hang instead of failing.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if mode == "crash" {
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("child: %v\n%s", err, out.String())
		}
	} else if err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "ROOT="); ok {
			root = v
		}
		if v, ok := strings.CutPrefix(line, "PIDS="); ok {
			for _, s := range strings.Split(v, ",") {
				pid, err := strconv.Atoi(s)
				if err != nil {
					t.Fatalf("bad pid %q in child output", s)
				}
				pids = append(pids, pid)
			}
		}
	}
	if root == "" || len(pids) != 3 {
		t.Fatalf("child did not report its servers:\n%s", out.String())
	}
	return root, pids
}

// alive is true for a live, non-zombie process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
}

func TestMainStopsServersAndRemovesFolder(t *testing.T) {
	root, pids := runChild(t, "normal")
	// Main has returned, so the servers must already be gone: no waiting.
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("server pid %d outlived Main", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("folder %s left behind: %v", root, err)
	}
}

func TestWatchdogCleansUpAfterCrash(t *testing.T) {
	root, pids := runChild(t, "crash")
	deadline := time.Now().Add(60 * time.Second)
	for {
		var live []int
		for _, pid := range pids {
			if alive(pid) {
				live = append(live, pid)
			}
		}
		_, statErr := os.Stat(root)
		if len(live) == 0 && os.IsNotExist(statErr) {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range live {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("60s after the crash: servers %v still alive, folder %s: %v", live, root, statErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The machine's own PostgreSQL and Redis may listen on the default ports; tests must never
// talk to them.
func TestServersAvoidSystemPorts(t *testing.T) {
	addr := Redis(t)
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if port == "6379" {
		t.Errorf("test Redis on the system's port %s", port)
	}
	if p := Postgres(t).Server().Port(); p == 5432 {
		t.Errorf("test PostgreSQL on the system's port %d", p)
	}
}
