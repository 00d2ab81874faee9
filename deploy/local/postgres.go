package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	pgLogName      = "postgres.log"
	pgConfInclude  = "meridian.conf"
	pgStartTimeout = 2 * time.Minute
	pgStopTimeout  = time.Minute
	// A Unix socket path holds at most 107 bytes; PostgreSQL appends "/.s.PGSQL.<port>".
	maxSocketPath = 107
)

// pgBaseSettings are what Meridian needs from every cluster: logical replication for online
// moves (a publication and a slot per move, a walsender and an apply worker each), and room for
// the connection pools of several API nodes and tests. ExtraSettings may override them.
func pgBaseSettings() map[string]string {
	return map[string]string{
		"wal_level":                       "logical",
		"max_wal_senders":                 "20",
		"max_replication_slots":           "20",
		"max_connections":                 "200",
		"max_worker_processes":            "32",
		"max_logical_replication_workers": "16",
	}
}

// isManagedSetting reports settings derived from PostgresConfig fields; setting them through
// ExtraSettings would make the folder disagree with the config.
func isManagedSetting(k string) bool {
	return k == "port" || k == "listen_addresses" || k == "unix_socket_directories"
}

var (
	pgIdentRe   = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	pgSettingRe = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)
)

// PostgresConfig describes one private PostgreSQL cluster.
type PostgresConfig struct {
	// BinDir holds initdb, pg_ctl and postgres.
	BinDir string
	// DataDir is the cluster's folder; initdb runs when it is empty or missing.
	DataDir string
	// Port is the TCP port. 0 keeps the port of a cluster already running on DataDir, else picks
	// a free one.
	Port int
	// Host is the only address listened on. It must be a loopback IP: the cluster trusts every
	// connection without a password.
	Host string
	// User is the superuser initdb creates.
	User string
	// ExtraSettings are added to postgresql.conf (through an included file) and override the
	// defaults in pgBaseSettings.
	ExtraSettings map[string]string
}

// DefaultPostgresConfig returns the config of a cluster in dataDir on port, with the binaries
// found by PostgresBinDir.
func DefaultPostgresConfig(dataDir string, port int) PostgresConfig {
	return PostgresConfig{
		BinDir:  PostgresBinDir(),
		DataDir: dataDir,
		Port:    port,
		Host:    "127.0.0.1",
		User:    "meridian",
	}
}

// PostgresBinDir finds PostgreSQL's server binaries: where pg_config says, then the Debian
// location of version 15, then any initdb on PATH. It returns "" when there are none.
func PostgresBinDir() string {
	has := func(dir string) bool {
		st, err := os.Stat(filepath.Join(dir, "initdb"))
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); has(dir) {
			return dir
		}
	}
	if dir := "/usr/lib/postgresql/15/bin"; has(dir) {
		return dir
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

// Validate checks every field and that the binaries exist.
func (c PostgresConfig) Validate() error {
	if c.DataDir == "" {
		return invalid("postgres: DataDir is empty")
	}
	if c.Port < 0 || c.Port > 65535 {
		return invalid("postgres: Port %d out of range", c.Port)
	}
	if err := validateLoopback("postgres", c.Host); err != nil {
		return err
	}
	if !pgIdentRe.MatchString(c.User) {
		return invalid("postgres: User %q is not a plain lower-case identifier", c.User)
	}
	for k, v := range c.ExtraSettings {
		if !pgSettingRe.MatchString(k) {
			return invalid("postgres: ExtraSettings key %q is not a setting name", k)
		}
		if isManagedSetting(k) {
			return invalid("postgres: ExtraSettings may not set %q; use the config field", k)
		}
		if strings.ContainsAny(v, "\n\r") {
			return invalid("postgres: ExtraSettings[%q] holds a newline", k)
		}
	}
	if c.BinDir == "" {
		return fmt.Errorf("postgres: BinDir is empty and no PostgreSQL was found: %w (install it: apt-get install -y postgresql-15, or run scripts/deps.sh)", ErrBinaryNotFound)
	}
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(c.BinDir, b)); err != nil {
			return fmt.Errorf("postgres: BinDir %s has no %s: %w (install it: apt-get install -y postgresql-15, or run scripts/deps.sh)", c.BinDir, b, ErrBinaryNotFound)
		}
	}
	return nil
}

func validateLoopback(process, host string) error {
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return invalid("%s: Host %q must be a loopback IP address such as 127.0.0.1", process, host)
	}
	return nil
}

// Postgres is a running cluster, started or found by StartPostgres.
type Postgres struct {
	cfg     PostgresConfig // resolved: absolute DataDir, actual Port
	sockDir string
	as      *osUser
	log     *slog.Logger
}

// StartPostgres starts the cluster in cfg.DataDir, creating it first if the folder is empty, and
// returns once it accepts connections. A cluster already running on that folder is reused.
// The postmaster is a daemon (pg_ctl start, in its own session): it keeps running after the
// caller exits, until Stop or StopPostgresDir.
func StartPostgres(ctx context.Context, cfg PostgresConfig, log *slog.Logger) (*Postgres, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := deadlineOr(ctx, pgStartTimeout)
	defer cancel()

	dir, err := absDir(cfg.DataDir, 0o700)
	if err != nil {
		return nil, fmt.Errorf("postgres: data folder: %w", err)
	}
	cfg.DataDir = dir
	log = log.With("process", "postgres", "data_dir", dir)
	as, err := runAs(log)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer unlock()

	p := &Postgres{cfg: cfg, as: as, log: log}
	if err := as.ensureTraversable(dir, log); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := as.give(dir); err != nil {
		return nil, fmt.Errorf("postgres: hand %s to user %s: %w", dir, as.name, err)
	}

	initialised := fileExists(filepath.Join(dir, "PG_VERSION"))
	if initialised {
		if reused, err := p.reuse(ctx); err != nil {
			return nil, err
		} else if reused {
			return p, nil
		}
	}
	// Checked before initdb so that a clash costs nothing; the bind itself is the real test.
	if cfg.Port != 0 && !portFree(cfg.Host, cfg.Port) {
		return nil, serverError("postgres", "start", cfg.Port, "", fmt.Errorf("port %s:%d is already in use by another process", cfg.Host, cfg.Port))
	}
	if !initialised {
		if err := p.initdb(ctx); err != nil {
			return nil, err
		}
	}

	previous := readConfPort(filepath.Join(dir, pgConfInclude), "port")
	for attempt := 1; ; attempt++ {
		port, auto, err := pickPort(cfg.Port, previous, cfg.Host)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		p.cfg.Port = port
		logStart := fileSize(p.LogFile())
		err = p.start(ctx)
		if err == nil || !auto || attempt == 3 || !isPortClash(logSince(p.LogFile(), logStart)) {
			if err != nil {
				return nil, err
			}
			return p, nil
		}
		log.Warn("port taken between picking and binding, retrying with another", "port", port)
		previous = 0
	}
}

// reuse adopts a postmaster already running on the data folder. It reports false when none runs.
func (p *Postgres) reuse(ctx context.Context) (bool, error) {
	st, ok := readPostmasterPid(p.cfg.DataDir)
	if !ok || !processIs(st.pid, "postgres") {
		return false, nil
	}
	if p.cfg.Port != 0 && st.port != p.cfg.Port {
		return true, serverError("postgres", "start", p.cfg.Port, p.LogFile(),
			fmt.Errorf("%w: cluster in %s already runs on port %d (pid %d)", ErrAlreadyRunning, p.cfg.DataDir, st.port, st.pid))
	}
	p.cfg.Port = st.port
	p.sockDir = st.sockDir
	if err := waitFor(ctx, 60*time.Second, 100*time.Millisecond, p.ping); err != nil {
		return true, serverError("postgres", "reuse", p.cfg.Port, p.LogFile(), fmt.Errorf("running (pid %d) but not accepting connections: %w", st.pid, err))
	}
	p.log.Info("reusing running postgres", "port", p.cfg.Port, "pid", st.pid)
	return true, nil
}

func (p *Postgres) initdb(ctx context.Context) error {
	entries, err := os.ReadDir(p.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if len(entries) > 0 {
		return invalid("postgres: DataDir %s is neither empty nor a PostgreSQL data folder (no PG_VERSION)", p.cfg.DataDir)
	}
	began := time.Now()
	// --no-sync: a crash during initdb costs a rerun, nothing more; it saves seconds per cluster.
	// C locale: byte order collation is deterministic across machines, which tests rely on.
	out, err := p.command(ctx, "initdb", "-D", p.cfg.DataDir, "-U", p.cfg.User, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		return &ServerError{Process: "postgres", Op: "initdb", Port: p.cfg.Port, Err: fmt.Errorf("%w: %s", err, lastLines(string(out), 20))}
	}
	conf := filepath.Join(p.cfg.DataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Settings managed by deploy/local, rewritten on every start.\ninclude_if_exists = '%s'\n", pgConfInclude)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", conf, err)
	}
	p.log.Info("initialised cluster", "took", time.Since(began).Round(time.Millisecond))
	return nil
}

func (p *Postgres) start(ctx context.Context) error {
	sockDir, err := p.socketDir()
	if err != nil {
		return fmt.Errorf("postgres: socket folder: %w", err)
	}
	p.sockDir = sockDir
	if err := p.writeConfig(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	began := time.Now()
	timeout := pgStartTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Second)
	}
	cmd := p.command(ctx, "pg_ctl", "start", "-D", p.cfg.DataDir, "-l", p.LogFile(), "-w", "-s",
		"-t", strconv.Itoa(int(timeout/time.Second)))
	// Its own session: a Ctrl-C meant for `meridian-local up` or `go test` must not reach the
	// daemon, whose lifetime is managed by Stop.
	cmd.SysProcAttr.Setsid = true
	if out, err := cmd.CombinedOutput(); err != nil {
		return serverError("postgres", "start", p.cfg.Port, p.LogFile(), fmt.Errorf("pg_ctl start: %w: %s", err, strings.TrimSpace(string(out))))
	}
	if err := waitFor(ctx, 30*time.Second, 50*time.Millisecond, p.ping); err != nil {
		return serverError("postgres", "start", p.cfg.Port, p.LogFile(), err)
	}
	p.log.Info("started postgres", "port", p.cfg.Port, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// socketDir is DataDir when the socket path fits the kernel's limit, else a short folder in /tmp
// named after the data folder so that the same cluster always gets the same one.
func (p *Postgres) socketDir() (string, error) {
	if len(p.cfg.DataDir)+len("/.s.PGSQL.65535") <= maxSocketPath {
		return p.cfg.DataDir, nil
	}
	sum := sha256.Sum256([]byte(p.cfg.DataDir))
	dir := filepath.Join("/tmp", "meridian-pg-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, p.as.give(dir)
}

// writeConfig rewrites the included settings file and pg_hba.conf from the config, so that the
// folder always matches the last start (and a manual `pg_ctl start` does the same thing).
func (p *Postgres) writeConfig() error {
	settings := pgBaseSettings()
	maps.Copy(settings, p.cfg.ExtraSettings)
	settings["port"] = strconv.Itoa(p.cfg.Port)
	settings["listen_addresses"] = p.cfg.Host
	settings["unix_socket_directories"] = p.sockDir
	var b strings.Builder
	b.WriteString("# Written by github.com/8thdegree/meridian/deploy/local on every start: edit\n# PostgresConfig.ExtraSettings instead of this file.\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	if err := p.writeOwned(pgConfInclude, b.String()); err != nil {
		return err
	}
	// Trust, but only on the socket (a folder only we can enter) and on the loopback address.
	hba := fmt.Sprintf(`# Written by deploy/local: password-less, loopback only.
local all         all trust
local replication all trust
host  all         all %[1]s trust
host  replication all %[1]s trust
`, hostCIDR(p.cfg.Host))
	return p.writeOwned("pg_hba.conf", hba)
}

func (p *Postgres) writeOwned(name, content string) error {
	path := filepath.Join(p.cfg.DataDir, name)
	if err := writeFileAtomic(path, []byte(content), 0o600); err != nil {
		return err
	}
	if p.as != nil {
		return os.Lchown(path, int(p.as.uid), int(p.as.gid))
	}
	return nil
}

func hostCIDR(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return host + "/128"
	}
	return host + "/32"
}

// command builds a PostgreSQL tool invocation that runs as the cluster's OS user.
func (p *Postgres) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.cfg.BinDir, tool), args...)
	cmd.Dir = p.cfg.DataDir // initdb and pg_ctl complain when they cannot enter the cwd
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	cmd.WaitDelay = 5 * time.Second
	p.as.apply(cmd)
	return cmd
}

func (p *Postgres) ping(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// DSN returns the URL of database on this cluster, connecting as the superuser without a password.
func (p *Postgres) DSN(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(p.cfg.User),
		Host:     net.JoinHostPort(p.cfg.Host, strconv.Itoa(p.cfg.Port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the cluster listens on.
func (p *Postgres) Port() int { return p.cfg.Port }

// DataDir returns the cluster's absolute data folder.
func (p *Postgres) DataDir() string { return p.cfg.DataDir }

// LogFile returns the server log's path.
func (p *Postgres) LogFile() string { return filepath.Join(p.cfg.DataDir, pgLogName) }

// Config returns the config the cluster runs with (absolute DataDir, actual Port).
func (p *Postgres) Config() PostgresConfig { return p.cfg }

// CreateDatabase creates database name; a database that already exists is success.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	if name == "" {
		return invalid("postgres: empty database name")
	}
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("postgres: create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	for attempt := 1; ; attempt++ {
		_, err = conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == "42P04": // duplicate_database
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == "55006" && attempt < 50:
			// "source database template1 is being accessed by other users": a concurrent
			// CREATE DATABASE or a client on template1; it passes in milliseconds.
			select {
			case <-ctx.Done():
				return fmt.Errorf("postgres: create database %s: %w", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		default:
			return fmt.Errorf("postgres: create database %s: %w", name, err)
		}
	}
}

// DropDatabase drops database name, disconnecting its clients; a missing database is success.
func (p *Postgres) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("postgres: drop database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("postgres: drop database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the cluster down (fast: open transactions roll back) and waits for it. Stopping a
// stopped cluster is success.
func (p *Postgres) Stop(ctx context.Context) error {
	return StopPostgresDir(ctx, p.cfg)
}

// StopPostgresDir stops the cluster running on cfg.DataDir, if any. It needs only DataDir (and
// BinDir), so `meridian-local down` can stop clusters started by an earlier process.
func StopPostgresDir(ctx context.Context, cfg PostgresConfig) error {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil || cfg.DataDir == "" {
		return invalid("postgres: DataDir %q", cfg.DataDir)
	}
	st, ok := readPostmasterPid(dir)
	if !ok || !processIs(st.pid, "postgres") {
		return nil
	}
	if cfg.BinDir == "" {
		cfg.BinDir = PostgresBinDir()
	}
	ctx, cancel := deadlineOr(ctx, pgStopTimeout)
	defer cancel()
	as, err := runAs(slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	p := &Postgres{cfg: cfg, as: as}
	p.cfg.DataDir = dir
	p.cfg.Port = st.port
	out, err := p.command(ctx, "pg_ctl", "stop", "-D", dir, "-m", "fast", "-w", "-s",
		"-t", strconv.Itoa(int(pgStopTimeout/time.Second))).CombinedOutput()
	if err != nil {
		// It may have stopped between our check and pg_ctl's (a concurrent Stop).
		if s, ok := readPostmasterPid(dir); !ok || !processIs(s.pid, "postgres") {
			return nil
		}
		return serverError("postgres", "stop", st.port, p.LogFile(), fmt.Errorf("pg_ctl stop: %w: %s", err, strings.TrimSpace(string(out))))
	}
	if st.sockDir != dir && strings.HasPrefix(st.sockDir, "/tmp/meridian-pg-") {
		_ = os.RemoveAll(st.sockDir)
	}
	return nil
}

// postmasterStatus is what postmaster.pid says about a running cluster.
type postmasterStatus struct {
	pid     int
	port    int
	sockDir string
}

// readPostmasterPid parses postmaster.pid (line 1 pid, 4 port, 5 socket folder). It reports false
// when there is no such file or it is unreadable (a cluster that is not running).
func readPostmasterPid(dataDir string) (postmasterStatus, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return postmasterStatus{}, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 5 {
		return postmasterStatus{}, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err1 != nil || err2 != nil {
		return postmasterStatus{}, false
	}
	return postmasterStatus{pid: pid, port: port, sockDir: strings.TrimSpace(lines[4])}, true
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
