package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	redisConfName     = "redis.conf"
	redisPidName      = "redis.pid"
	redisLogName      = "redis.log"
	redisStartTimeout = 30 * time.Second
	redisStopGrace    = 10 * time.Second
)

// RedisConfig describes one private Redis server. Redis here is a cache and a rate-limit store:
// it persists nothing, and a restart starts empty.
type RedisConfig struct {
	// Bin is the redis-server binary.
	Bin string
	// Dir holds the config, pid and log files (and is the server's working folder).
	Dir string
	// Port is the TCP port; 0 keeps the folder's previous port when free, else picks one.
	Port int
	// Host is the only address listened on; a loopback IP (there is no password).
	Host string
}

// DefaultRedisConfig returns the config of a server in dir on port, with redis-server from PATH.
func DefaultRedisConfig(dir string, port int) RedisConfig {
	bin, _ := exec.LookPath("redis-server")
	return RedisConfig{Bin: bin, Dir: dir, Port: port, Host: "127.0.0.1"}
}

// Validate checks every field and that the binary exists.
func (c RedisConfig) Validate() error {
	if c.Dir == "" {
		return invalid("redis: Dir is empty")
	}
	if c.Port < 0 || c.Port > 65535 {
		return invalid("redis: Port %d out of range", c.Port)
	}
	if err := validateLoopback("redis", c.Host); err != nil {
		return err
	}
	if c.Bin == "" {
		return fmt.Errorf("redis: Bin is empty and redis-server is not on PATH: %w (install it: apt-get install -y redis-server, or run scripts/deps.sh)", ErrBinaryNotFound)
	}
	if _, err := os.Stat(c.Bin); err != nil {
		return fmt.Errorf("redis: Bin %s: %w (install it: apt-get install -y redis-server, or run scripts/deps.sh)", c.Bin, ErrBinaryNotFound)
	}
	return nil
}

// Redis is a running server, started or found by StartRedis.
type Redis struct {
	cfg RedisConfig // resolved: absolute Dir, actual Port
	log *slog.Logger
}

// StartRedis starts a daemonised redis-server for cfg.Dir and returns once it answers PING. A
// server already running for that folder is reused.
func StartRedis(ctx context.Context, cfg RedisConfig, log *slog.Logger) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := deadlineOr(ctx, redisStartTimeout)
	defer cancel()
	dir, err := absDir(cfg.Dir, 0o700)
	if err != nil {
		return nil, fmt.Errorf("redis: folder: %w", err)
	}
	cfg.Dir = dir
	log = log.With("process", "redis", "dir", dir)
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	defer unlock()
	r := &Redis{cfg: cfg, log: log}

	previous := readConfPort(filepath.Join(dir, redisConfName), "port")
	if pid, err := readPidFile(r.pidFile()); err == nil && processIs(pid, "redis") {
		if cfg.Port != 0 && cfg.Port != previous {
			return nil, serverError("redis", "start", cfg.Port, r.LogFile(),
				fmt.Errorf("%w: server for %s already runs on port %d (pid %d)", ErrAlreadyRunning, dir, previous, pid))
		}
		r.cfg.Port = previous
		if err := waitFor(ctx, redisStartTimeout, 50*time.Millisecond, r.ping); err != nil {
			return nil, serverError("redis", "reuse", previous, r.LogFile(), fmt.Errorf("running (pid %d) but not answering PING: %w", pid, err))
		}
		log.Info("reusing running redis", "port", previous, "pid", pid)
		return r, nil
	}

	for attempt := 1; ; attempt++ {
		port, auto, err := pickPort(cfg.Port, previous, cfg.Host)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		if !auto && !portFree(cfg.Host, port) {
			return nil, serverError("redis", "start", port, "", fmt.Errorf("port %s:%d is already in use by another process", cfg.Host, port))
		}
		r.cfg.Port = port
		logStart := fileSize(r.LogFile())
		err = r.start(ctx)
		if err == nil {
			return r, nil
		}
		if !auto || attempt == 3 || !isPortClash(logSince(r.LogFile(), logStart)) {
			return nil, err
		}
		log.Warn("port taken between picking and binding, retrying with another", "port", port)
		previous = 0
	}
}

func (r *Redis) start(ctx context.Context) error {
	began := time.Now()
	_ = os.Remove(r.pidFile()) // stale: its process is gone, checked by the caller
	// No persistence (save "", no AOF): this Redis holds caches and rate-limit counters only.
	conf := fmt.Sprintf(`# Written by github.com/8thdegree/meridian/deploy/local on every start.
port %d
bind %s
protected-mode yes
daemonize yes
pidfile %s
logfile %s
dir %s
save ""
appendonly no
`, r.cfg.Port, r.cfg.Host, strconv.Quote(r.pidFile()), strconv.Quote(r.LogFile()), strconv.Quote(r.cfg.Dir))
	confPath := filepath.Join(r.cfg.Dir, redisConfName)
	if err := writeFileAtomic(confPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	cmd := exec.CommandContext(ctx, r.cfg.Bin, confPath)
	cmd.Dir = r.cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	// With daemonize the command returns once the daemon has forked; binding happens after, so
	// readiness is PING, and a daemon that died (bad port) is caught by watching its pid.
	if out, err := cmd.CombinedOutput(); err != nil {
		return serverError("redis", "start", r.cfg.Port, r.LogFile(), fmt.Errorf("redis-server: %w: %s", err, strings.TrimSpace(string(out))))
	}
	err := waitFor(ctx, redisStartTimeout, 20*time.Millisecond, func(ctx context.Context) error {
		if err := r.ping(ctx); err == nil {
			return nil
		} else if pid, perr := readPidFile(r.pidFile()); perr == nil && !processAlive(pid) {
			return giveUp{fmt.Errorf("redis-server (pid %d) exited: %w", pid, err)}
		} else {
			return err
		}
	})
	if err != nil {
		return serverError("redis", "start", r.cfg.Port, r.LogFile(), err)
	}
	r.log.Info("started redis", "port", r.cfg.Port, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// ping sends PING in the Redis protocol and expects +PONG. It is all the readiness check needs,
// so the package does not depend on a Redis client.
func (r *Redis) ping(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.Addr())
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Addr returns "host:port".
func (r *Redis) Addr() string { return net.JoinHostPort(r.cfg.Host, strconv.Itoa(r.cfg.Port)) }

// Port returns the TCP port.
func (r *Redis) Port() int { return r.cfg.Port }

// LogFile returns the server log's path.
func (r *Redis) LogFile() string { return filepath.Join(r.cfg.Dir, redisLogName) }

// Config returns the config the server runs with (absolute Dir, actual Port).
func (r *Redis) Config() RedisConfig { return r.cfg }

func (r *Redis) pidFile() string { return filepath.Join(r.cfg.Dir, redisPidName) }

// Stop stops the server (SIGTERM, SIGKILL after a grace period) and waits for it to exit.
// Stopping a stopped server is success.
func (r *Redis) Stop(ctx context.Context) error { return StopRedisDir(ctx, r.cfg) }

// StopRedisDir stops the server running for cfg.Dir, if any; it needs only Dir.
func StopRedisDir(ctx context.Context, cfg RedisConfig) error {
	if cfg.Dir == "" {
		return invalid("redis: Dir is empty")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return invalid("redis: Dir %q: %v", cfg.Dir, err)
	}
	pidFile := filepath.Join(dir, redisPidName)
	pid, err := readPidFile(pidFile)
	if err != nil || !processIs(pid, "redis") {
		return nil
	}
	ctx, cancel := deadlineOr(ctx, redisStopGrace+15*time.Second)
	defer cancel()
	if err := stopPid(ctx, pid, syscall.SIGTERM, redisStopGrace, nil); err != nil {
		port := readConfPort(filepath.Join(dir, redisConfName), "port")
		return serverError("redis", "stop", port, filepath.Join(dir, redisLogName), err)
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// readConfPort finds "key N" or "key = N" in a config file, or returns 0.
func readConfPort(path, key string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.ReplaceAll(line, "=", " "))
		if len(f) == 2 && f[0] == key {
			port, _ := strconv.Atoi(strings.Trim(f[1], `'"`))
			return port
		}
	}
	return 0
}
