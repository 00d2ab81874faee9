package local

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter sends log lines to t.Log so that they show only for failing (or -v) tests.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real server; skipped with -short")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestPostgresConfigValidate(t *testing.T) {
	good := DefaultPostgresConfig("/tmp/x", 5544)
	good.BinDir = t.TempDir()
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if err := os.WriteFile(filepath.Join(good.BinDir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		mutate  func(*PostgresConfig)
		wantErr error
		field   string
	}{
		{"ok", func(*PostgresConfig) {}, nil, ""},
		{"auto port", func(c *PostgresConfig) { c.Port = 0 }, nil, ""},
		{"no data dir", func(c *PostgresConfig) { c.DataDir = "" }, ErrInvalidConfig, "DataDir"},
		{"negative port", func(c *PostgresConfig) { c.Port = -1 }, ErrInvalidConfig, "Port"},
		{"huge port", func(c *PostgresConfig) { c.Port = 70000 }, ErrInvalidConfig, "Port"},
		{"public host", func(c *PostgresConfig) { c.Host = "0.0.0.0" }, ErrInvalidConfig, "Host"},
		{"hostname", func(c *PostgresConfig) { c.Host = "localhost" }, ErrInvalidConfig, "Host"},
		{"ipv6 loopback", func(c *PostgresConfig) { c.Host = "::1" }, nil, ""},
		{"bad user", func(c *PostgresConfig) { c.User = "Robert'); DROP" }, ErrInvalidConfig, "User"},
		{"managed setting", func(c *PostgresConfig) { c.ExtraSettings = map[string]string{"port": "1"} }, ErrInvalidConfig, "port"},
		{"bad setting name", func(c *PostgresConfig) { c.ExtraSettings = map[string]string{"a b": "1"} }, ErrInvalidConfig, "ExtraSettings"},
		{"newline value", func(c *PostgresConfig) { c.ExtraSettings = map[string]string{"work_mem": "1\nfsync=off"} }, ErrInvalidConfig, "newline"},
		{"good setting", func(c *PostgresConfig) { c.ExtraSettings = map[string]string{"work_mem": "64MB"} }, nil, ""},
		{"no bin dir", func(c *PostgresConfig) { c.BinDir = "" }, ErrBinaryNotFound, "postgresql-15"},
		{"empty bin dir", func(c *PostgresConfig) { c.BinDir = t.TempDir() }, ErrBinaryNotFound, "initdb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mutate(&c)
			err := c.Validate()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
}

// pgDataDir returns a fresh data folder path for a test cluster.
func pgDataDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "pg")
}

func startTestPostgres(t *testing.T, cfg PostgresConfig) *Postgres {
	t.Helper()
	if cfg.BinDir == "" {
		t.Fatalf("PostgreSQL is not installed (looked at pg_config --bindir, /usr/lib/postgresql/15/bin, PATH): run scripts/deps.sh")
	}
	began := time.Now()
	pg, err := StartPostgres(testCtx(t), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartPostgres(%s) took %s", cfg.DataDir, time.Since(began))
	t.Cleanup(func() {
		if err := pg.Stop(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return pg
}

func queryString(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestPostgresLifecycle(t *testing.T) {
	integration(t)
	ctx := testCtx(t)
	cfg := DefaultPostgresConfig(pgDataDir(t), 0)
	cfg.ExtraSettings = map[string]string{"work_mem": "8MB"}
	pg := startTestPostgres(t, cfg)

	if pg.Port() == 0 {
		t.Fatal("no port was picked")
	}
	wantDSN := "postgres://meridian@127.0.0.1:" + strconv.Itoa(pg.Port()) + "/app?sslmode=disable"
	if got := pg.DSN("app"); got != wantDSN {
		t.Errorf("DSN = %q, want %q", got, wantDSN)
	}
	for setting, want := range map[string]string{
		"wal_level": "logical", "max_wal_senders": "20", "max_replication_slots": "20",
		"max_connections": "200", "listen_addresses": "127.0.0.1", "work_mem": "8MB",
		"server_encoding": "UTF8",
	} {
		if got := queryString(t, pg.DSN("postgres"), "SHOW "+setting); got != want {
			t.Errorf("SHOW %s = %q, want %q", setting, got, want)
		}
	}
	if got := queryString(t, pg.DSN("postgres"), "SELECT current_user"); got != "meridian" {
		t.Errorf("current_user = %q", got)
	}

	if os.Geteuid() == 0 {
		// Root cannot run postgres: the folder must belong to the unprivileged user it runs as.
		st, err := os.Stat(pg.DataDir())
		if err != nil {
			t.Fatal(err)
		}
		u, err := user.Lookup(postgresOSUser)
		if err != nil {
			t.Fatal(err)
		}
		if got := strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Uid)); got != u.Uid {
			t.Errorf("data folder owned by uid %s, want %s (%s)", got, u.Uid, postgresOSUser)
		}
	}

	// CreateDatabase is idempotent and the database is usable.
	for range 2 {
		if err := pg.CreateDatabase(ctx, "shard_us_1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := queryString(t, pg.DSN("shard_us_1"), "SELECT current_database()"); got != "shard_us_1" {
		t.Errorf("current_database = %q", got)
	}
	// Names that need quoting work too.
	if err := pg.CreateDatabase(ctx, "Mixed-Case db"); err != nil {
		t.Fatal(err)
	}
	if err := pg.DropDatabase(ctx, "Mixed-Case db"); err != nil {
		t.Fatal(err)
	}
	if err := pg.DropDatabase(ctx, "Mixed-Case db"); err != nil {
		t.Fatalf("dropping a missing database: %v", err)
	}

	// A second start on the same folder reuses the running postmaster.
	before, _ := readPostmasterPid(pg.DataDir())
	again, err := StartPostgres(ctx, DefaultPostgresConfig(cfg.DataDir, 0), testLogger(t))
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	after, _ := readPostmasterPid(pg.DataDir())
	if again.Port() != pg.Port() || before.pid != after.pid {
		t.Errorf("second start: port %d pid %d, want reuse of port %d pid %d", again.Port(), after.pid, pg.Port(), before.pid)
	}
	// Asking for another port while it runs is an error, not a silent second cluster.
	other := DefaultPostgresConfig(cfg.DataDir, pg.Port()+1)
	if _, err := StartPostgres(ctx, other, testLogger(t)); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("start on another port while running: %v, want ErrAlreadyRunning", err)
	}

	// Stop is idempotent, also through StopPostgresDir from "another process".
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := StopPostgresDir(ctx, DefaultPostgresConfig(cfg.DataDir, 0)); err != nil {
		t.Fatalf("StopPostgresDir on a stopped cluster: %v", err)
	}
	if _, err := pgx.Connect(ctx, pg.DSN("postgres")); err == nil {
		t.Fatal("connected to a stopped cluster")
	}

	// Starting again keeps the data and, with Port 0, the previous port.
	restarted, err := StartPostgres(ctx, DefaultPostgresConfig(cfg.DataDir, 0), testLogger(t))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if restarted.Port() != pg.Port() {
		t.Errorf("restart moved the port from %d to %d", pg.Port(), restarted.Port())
	}
	if got := queryString(t, restarted.DSN("shard_us_1"), "SELECT current_database()"); got != "shard_us_1" {
		t.Errorf("after restart current_database = %q", got)
	}
	if err := StopPostgresDir(ctx, DefaultPostgresConfig(cfg.DataDir, 0)); err != nil {
		t.Fatal(err)
	}
	if st, ok := readPostmasterPid(cfg.DataDir); ok && processAlive(st.pid) {
		t.Errorf("postmaster %d still alive after StopPostgresDir", st.pid)
	}
}

func TestPostgresLongDataDirUsesShortSocketDir(t *testing.T) {
	integration(t)
	long := filepath.Join(t.TempDir(), strings.Repeat("a-very-long-folder-name-", 5), "pg")
	cfg := DefaultPostgresConfig(long, 0)
	pg := startTestPostgres(t, cfg)
	sock := queryString(t, pg.DSN("postgres"), "SHOW unix_socket_directories")
	if sock == pg.DataDir() || !strings.HasPrefix(sock, "/tmp/meridian-pg-") {
		t.Errorf("unix_socket_directories = %q for a %d-byte data folder", sock, len(pg.DataDir()))
	}
	if len(sock)+len("/.s.PGSQL.65535") > maxSocketPath {
		t.Errorf("socket path %q is too long", sock)
	}
	if err := pg.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket folder %s left behind after Stop: %v", sock, err)
	}
}

func TestPostgresRefusesNonEmptyForeignFolder(t *testing.T) {
	integration(t)
	dir := pgDataDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := StartPostgres(testCtx(t), DefaultPostgresConfig(dir, 0), testLogger(t))
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "PG_VERSION") {
		t.Fatalf("start on a non-empty foreign folder: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "precious.txt")); err != nil || string(b) != "x" {
		t.Error("the folder's contents were touched")
	}
}

func TestPostgresPortInUse(t *testing.T) {
	integration(t)
	cfg := DefaultPostgresConfig(pgDataDir(t), 0)
	first := startTestPostgres(t, cfg)
	// A second cluster asking for the first one's port fails fast and names the port.
	_, err := StartPostgres(testCtx(t), DefaultPostgresConfig(pgDataDir(t), first.Port()), testLogger(t))
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(first.Port())) {
		t.Fatalf("start on a taken port: %v", err)
	}
}
