package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// ConsulVersion is the Consul release scripts/ensure-consul.sh builds and ConsulBinary looks for.
	ConsulVersion      = "v1.16.1"
	consulConfName     = "meridian-consul.json"
	consulPidName      = "consul.pid"
	consulLogName      = "consul.log"
	consulStartTimeout = time.Minute
	consulStopGrace    = 15 * time.Second
	consulProbeKey     = "meridian-local/probe"
)

var consulNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ConsulConfig describes a single-node Consul server agent on loopback.
type ConsulConfig struct {
	// Bin is the consul binary (see ConsulBinary).
	Bin string
	// DataDir holds Raft and Serf state, which survives restarts, and our config, pid and log files.
	DataDir string
	// Ports: 0 keeps the folder's previous port when free, else picks a free one. DNSPort and
	// GRPCPort may be -1 to disable that listener; the others are required by a server.
	HTTPPort, ServerPort, SerfLANPort, DNSPort, GRPCPort int
	// Datacenter is the agent's datacenter name (lower case).
	Datacenter string
	// NodeName is the agent's node name.
	NodeName string
	// Roles are the ACL tokens the agent gets besides its management and agent tokens (see
	// ConsulRoles); their tokens are kept in the data folder (ConsulTokenFile).
	Roles []ConsulRole
}

// DefaultConsulConfig returns the config of an agent in dataDir with the binary ConsulBinary
// finds (empty if none), datacenter dc1, and neither DNS nor gRPC listeners, which Meridian does
// not use.
func DefaultConsulConfig(dataDir string) ConsulConfig {
	bin, _ := ConsulBinary()
	return ConsulConfig{Bin: bin, DataDir: dataDir, DNSPort: -1, GRPCPort: -1, Datacenter: "dc1", NodeName: "meridian"}
}

// ConsulBinary finds the consul binary: $CONSUL_BIN, else the one scripts/ensure-consul.sh caches
// (in $MERIDIAN_CACHE, $XDG_CACHE_HOME/meridian or ~/.cache/meridian), else consul on PATH.
func ConsulBinary() (string, error) {
	if bin := os.Getenv("CONSUL_BIN"); bin != "" {
		if !isExecutable(bin) {
			return "", fmt.Errorf("CONSUL_BIN=%s is not an executable file: %w (unset it to use the one scripts/ensure-consul.sh builds)", bin, ErrBinaryNotFound)
		}
		return bin, nil
	}
	cache := os.Getenv("MERIDIAN_CACHE")
	if cache == "" {
		if base, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(base, "meridian")
		}
	}
	if cache != "" {
		if bin := filepath.Join(cache, "consul-"+ConsulVersion, "consul"); isExecutable(bin) {
			return bin, nil
		}
	}
	if bin, err := exec.LookPath("consul"); err == nil {
		return bin, nil
	}
	return "", fmt.Errorf("consul %s %w: run scripts/ensure-consul.sh (builds it once, into ~/.cache/meridian) or set CONSUL_BIN", ConsulVersion, ErrBinaryNotFound)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Validate checks every field and that the binary exists.
func (c ConsulConfig) Validate() error {
	if c.DataDir == "" {
		return invalid("consul: DataDir is empty")
	}
	for _, p := range []struct {
		name     string
		port     int
		optional bool
	}{
		{"HTTPPort", c.HTTPPort, false}, {"ServerPort", c.ServerPort, false}, {"SerfLANPort", c.SerfLANPort, false},
		{"DNSPort", c.DNSPort, true}, {"GRPCPort", c.GRPCPort, true},
	} {
		if p.port > 65535 || p.port < -1 || (p.port == -1 && !p.optional) {
			return invalid("consul: %s %d out of range", p.name, p.port)
		}
	}
	if !consulNameRe.MatchString(c.Datacenter) {
		return invalid("consul: Datacenter %q must be lower-case letters, digits, '-' or '_'", c.Datacenter)
	}
	if !consulNameRe.MatchString(strings.ToLower(c.NodeName)) {
		return invalid("consul: NodeName %q must be letters, digits, '-' or '_'", c.NodeName)
	}
	seen := map[string]bool{RoleManagement: true, RoleAgent: true}
	for _, r := range c.Roles {
		if !consulNameRe.MatchString(r.Name) {
			return invalid("consul: Roles: name %q must be lower-case letters, digits, '-' or '_'", r.Name)
		}
		if seen[r.Name] {
			return invalid("consul: Roles: %q is reserved or given twice", r.Name)
		}
		seen[r.Name] = true
		if strings.TrimSpace(r.Rules) == "" {
			return invalid("consul: Roles: %s has no rules", r.Name)
		}
	}
	if c.Bin == "" {
		_, err := ConsulBinary()
		return fmt.Errorf("consul: Bin is empty and no binary was found: %w", err)
	}
	if !isExecutable(c.Bin) {
		return fmt.Errorf("consul: Bin %s is not an executable file: %w (run scripts/ensure-consul.sh)", c.Bin, ErrBinaryNotFound)
	}
	return nil
}

// Consul is a running agent, started or found by StartConsul. Its methods may be called from
// several goroutines.
type Consul struct {
	mu   sync.Mutex
	cfg  ConsulConfig // resolved: absolute DataDir, actual ports
	log  *slog.Logger
	http *http.Client
	// done is closed when the agent this value started has exited and been reaped; nil when the
	// agent was started by another process (then we poll its pid).
	done <-chan struct{}
}

// StartConsul starts a single-node Consul server on loopback with persistent data in
// cfg.DataDir, in its own session so that it outlives the caller, and returns once it has a
// leader, serves KV reads and writes, and has every role's policy and token (ACLs on, default
// deny; see consulacl.go). An agent already running for that folder is reused, tokens included.
func StartConsul(ctx context.Context, cfg ConsulConfig, log *slog.Logger) (*Consul, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := deadlineOr(ctx, consulStartTimeout)
	defer cancel()
	dir, err := absDir(cfg.DataDir, 0o700)
	if err != nil {
		return nil, fmt.Errorf("consul: data folder: %w", err)
	}
	cfg.DataDir = dir
	c := &Consul{cfg: cfg, log: log.With("process", "consul", "data_dir", dir), http: &http.Client{Timeout: 10 * time.Second}}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	defer unlock()
	if err := c.startLocked(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// startLocked reuses a running agent or starts one; the caller holds the folder lock.
func (c *Consul) startLocked(ctx context.Context) error {
	prev, _ := readConsulPorts(filepath.Join(c.cfg.DataDir, consulConfName))
	if pid, err := readPidFile(c.pidFile()); err == nil && processIs(pid, "consul") {
		if c.cfg.HTTPPort != 0 && c.cfg.HTTPPort != prev.HTTP {
			return serverError("consul", "start", c.cfg.HTTPPort, c.LogFile(),
				fmt.Errorf("%w: agent for %s already serves HTTP on port %d (pid %d)", ErrAlreadyRunning, c.cfg.DataDir, prev.HTTP, pid))
		}
		c.mu.Lock()
		c.cfg.HTTPPort, c.cfg.ServerPort, c.cfg.SerfLANPort, c.cfg.DNSPort, c.cfg.GRPCPort = prev.HTTP, prev.Server, prev.SerfLAN, prev.DNS, prev.GRPC
		c.mu.Unlock()
		if err := waitFor(ctx, consulStartTimeout, 100*time.Millisecond, c.ready); err != nil {
			return serverError("consul", "reuse", c.cfg.HTTPPort, c.LogFile(), fmt.Errorf("running (pid %d) but not ready: %w", pid, err))
		}
		c.log.Info("reusing running consul", "http_port", c.cfg.HTTPPort, "pid", pid)
		return c.ensureACL(ctx)
	}

	want := c.cfg
	for attempt := 1; ; attempt++ {
		auto, err := c.pickPorts(want, prev)
		if err != nil {
			return err
		}
		logStart := fileSize(c.LogFile())
		err = c.spawn(ctx)
		if err == nil {
			return c.ensureACL(ctx)
		}
		if !auto || attempt == 3 || !isPortClash(logSince(c.LogFile(), logStart)) {
			return err
		}
		c.log.Warn("port taken between picking and binding, retrying with others", "http_port", c.cfg.HTTPPort)
		prev = consulPorts{}
	}
}

// pickPorts resolves every 0 port in want, preferring the folder's previous ones. auto reports
// whether any port was chosen here.
func (c *Consul) pickPorts(want ConsulConfig, prev consulPorts) (auto bool, err error) {
	taken := map[int]bool{}
	pick := func(name string, want, prev int) (int, error) {
		if want != 0 {
			if want > 0 && !portFree("127.0.0.1", want) {
				return 0, serverError("consul", "start", want, "", fmt.Errorf("%s %d is already in use by another process", name, want))
			}
			taken[want] = true
			return want, nil
		}
		auto = true
		if taken[prev] {
			prev = 0
		}
		for {
			p, _, err := pickPort(0, prev, "127.0.0.1")
			if err != nil {
				return 0, fmt.Errorf("consul: %s: %w", name, err)
			}
			if !taken[p] {
				taken[p] = true
				return p, nil
			}
			prev = 0
		}
	}
	next := c.cfg
	cfg := &next
	if cfg.HTTPPort, err = pick("HTTPPort", want.HTTPPort, prev.HTTP); err != nil {
		return auto, err
	}
	if cfg.ServerPort, err = pick("ServerPort", want.ServerPort, prev.Server); err != nil {
		return auto, err
	}
	if cfg.SerfLANPort, err = pick("SerfLANPort", want.SerfLANPort, prev.SerfLAN); err != nil {
		return auto, err
	}
	if cfg.DNSPort, err = pick("DNSPort", want.DNSPort, prev.DNS); err != nil {
		return auto, err
	}
	if cfg.GRPCPort, err = pick("GRPCPort", want.GRPCPort, prev.GRPC); err != nil {
		return auto, err
	}
	// Under the lock: HTTPAddr may be read by another goroutine during a Restart.
	c.mu.Lock()
	c.cfg = next
	c.mu.Unlock()
	return auto, nil
}

// consulPorts is the "ports" block of the agent config file.
type consulPorts struct {
	HTTP    int `json:"http"`
	Server  int `json:"server"`
	SerfLAN int `json:"serf_lan"`
	SerfWAN int `json:"serf_wan"`
	DNS     int `json:"dns"`
	GRPC    int `json:"grpc"`
	GRPCTLS int `json:"grpc_tls"`
	HTTPS   int `json:"https"`
}

func readConsulPorts(path string) (consulPorts, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return consulPorts{}, err
	}
	var conf struct {
		Ports consulPorts `json:"ports"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		return consulPorts{}, fmt.Errorf("consul: %s: %w", path, err)
	}
	return conf.Ports, nil
}

// agentConfig is the agent's config file: what `consul agent -server -bootstrap-expect=1
// -bind 127.0.0.1 -client 127.0.0.1 -serf-wan-port=-1 ...` would say, with the fastest Raft
// timings a persistent agent allows (raft_multiplier 1, as in -dev). The sub-second timings of
// -dev itself (the internal `consul.raft` block) cannot be set from a config file: Consul merges
// its own defaults for them after every user source. So an election, on every start, takes
// 1-2 s (one randomised heartbeat timeout); -dev is no way out, it keeps Raft in memory.
//
// ACLs are on with a default policy of deny (see consulacl.go): the agent bootstraps the
// management token from this file on its first start, and keeps its node in the catalog with the
// agent token. Tokens set later through the agent's API (consul acl set-agent-token) persist in
// the data folder and win over this file's.
func (c *Consul) agentConfig() ([]byte, error) {
	mgmt, err := c.managementToken()
	if err != nil {
		return nil, fmt.Errorf("management token: %w", err)
	}
	agent, err := secret(ConsulTokenFile(c.cfg.DataDir, RoleAgent))
	if err != nil {
		return nil, fmt.Errorf("agent token: %w", err)
	}
	conf := map[string]any{
		"datacenter":       c.cfg.Datacenter,
		"node_name":        c.cfg.NodeName,
		"data_dir":         c.cfg.DataDir,
		"pid_file":         c.pidFile(),
		"server":           true,
		"bootstrap_expect": 1,
		"bind_addr":        "127.0.0.1",
		"advertise_addr":   "127.0.0.1",
		"client_addr":      "127.0.0.1",
		"ports": consulPorts{
			HTTP: c.cfg.HTTPPort, Server: c.cfg.ServerPort, SerfLAN: c.cfg.SerfLANPort, SerfWAN: -1,
			DNS: c.cfg.DNSPort, GRPC: c.cfg.GRPCPort, GRPCTLS: -1, HTTPS: -1,
		},
		"log_level":               "INFO",
		"disable_update_check":    true,
		"leave_on_terminate":      false,
		"skip_leave_on_interrupt": true,
		"ui_config":               map[string]any{"enabled": false},
		"performance":             map[string]any{"raft_multiplier": 1},
		// A single server has no cluster to be stale against; the default (7 days) would make a
		// local cluster that sat stopped for a week refuse to start.
		"server_rejoin_age_max": "87600h",
		"acl": map[string]any{
			"enabled":                  true,
			"default_policy":           "deny",
			"down_policy":              "extend-cache",
			"enable_token_persistence": true,
			"tokens":                   map[string]any{"initial_management": mgmt, "agent": agent},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// spawn writes the config, starts the agent in its own session and waits until it is ready.
func (c *Consul) spawn(ctx context.Context) error {
	began := time.Now()
	conf, err := c.agentConfig()
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	confPath := filepath.Join(c.cfg.DataDir, consulConfName)
	if err := writeFileAtomic(confPath, conf, 0o600); err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	logf, err := os.OpenFile(c.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	defer logf.Close() // the child has its own copy
	// Not CommandContext: ctx bounds the start, not the agent's life.
	cmd := exec.Command(c.cfg.Bin, "agent", "-config-file", confPath)
	cmd.Dir = c.cfg.DataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return serverError("consul", "start", c.cfg.HTTPPort, c.LogFile(), err)
	}
	pid := cmd.Process.Pid
	// Written now, not only by the agent, so that a Stop racing this start finds it.
	if err := writeFileAtomic(c.pidFile(), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("consul: %w", err)
	}
	done := make(chan struct{})
	go func() {
		// Reap the agent if it exits while we live; after we exit, init does.
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	c.done = done
	c.mu.Unlock()

	err = waitFor(ctx, consulStartTimeout, 50*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-done:
			return giveUp{fmt.Errorf("consul agent (pid %d) exited: %s", pid, cmd.ProcessState)}
		default:
		}
		return c.ready(ctx)
	})
	if err != nil {
		_ = stopPid(context.WithoutCancel(ctx), pid, syscall.SIGKILL, time.Second, done)
		return serverError("consul", "start", c.cfg.HTTPPort, c.LogFile(), err)
	}
	c.log.Info("started consul", "http_port", c.cfg.HTTPPort, "pid", pid, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// ready checks that the agent has a Raft leader and that a KV write and read go through: a leader
// alone is not enough, the first writes after an election can still fail.
func (c *Consul) ready(ctx context.Context) error {
	body, err := c.do(ctx, http.MethodGet, "/v1/status/leader", nil)
	if err != nil {
		return err
	}
	var leader string
	if err := json.Unmarshal(body, &leader); err != nil || leader == "" {
		return fmt.Errorf("no leader yet (%s)", strings.TrimSpace(string(body)))
	}
	probe := make([]byte, 8)
	_, _ = rand.Read(probe)
	want := hex.EncodeToString(probe)
	if _, err := c.do(ctx, http.MethodPut, "/v1/kv/"+consulProbeKey, strings.NewReader(want)); err != nil {
		return fmt.Errorf("kv put: %w", err)
	}
	got, err := c.do(ctx, http.MethodGet, "/v1/kv/"+consulProbeKey+"?raw", nil)
	if err != nil {
		return fmt.Errorf("kv get: %w", err)
	}
	if string(got) != want {
		return fmt.Errorf("kv get returned %q, want %q", got, want)
	}
	return nil
}

// do sends a request with the management token.
func (c *Consul) do(ctx context.Context, method, path string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.HTTPAddr()+path, body)
	if err != nil {
		return nil, err
	}
	mgmt, err := c.managementToken()
	if err != nil {
		return nil, giveUp{fmt.Errorf("management token: %w", err)}
	}
	req.Header.Set("X-Consul-Token", mgmt)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// HTTPAddr returns the HTTP API address, "127.0.0.1:port", as consul/api's Config.Address wants it.
func (c *Consul) HTTPAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.cfg.HTTPPort))
}

// Config returns the config the agent runs with (absolute DataDir, actual ports).
func (c *Consul) Config() ConsulConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// LogFile returns the agent log's path.
func (c *Consul) LogFile() string { return filepath.Join(c.cfg.DataDir, consulLogName) }

func (c *Consul) pidFile() string { return filepath.Join(c.cfg.DataDir, consulPidName) }

// Stop stops the agent (SIGTERM, SIGKILL after a grace period) and waits until it has exited.
// Its data stays. Stopping a stopped agent is success.
func (c *Consul) Stop(ctx context.Context) error {
	c.mu.Lock()
	done, cfg := c.done, c.cfg
	c.mu.Unlock()
	return stopConsul(ctx, cfg.DataDir, cfg.HTTPPort, done)
}

// Restart stops the agent and starts it again on the same data folder and ports; the KV store
// and catalog survive. Tests use it to take Consul away and bring it back.
func (c *Consul) Restart(ctx context.Context) error {
	if err := c.Stop(ctx); err != nil {
		return err
	}
	ctx, cancel := deadlineOr(ctx, consulStartTimeout)
	defer cancel()
	unlock, err := lockDir(ctx, c.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	defer unlock()
	// The ports are fixed now: clients hold the address, so Restart must not move it.
	if err := c.startLocked(ctx); err != nil {
		return err
	}
	return nil
}

// StopConsulDir stops the agent running for cfg.DataDir, if any; it needs only DataDir.
func StopConsulDir(ctx context.Context, cfg ConsulConfig) error {
	if cfg.DataDir == "" {
		return invalid("consul: DataDir is empty")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return invalid("consul: DataDir %q: %v", cfg.DataDir, err)
	}
	ports, _ := readConsulPorts(filepath.Join(dir, consulConfName))
	return stopConsul(ctx, dir, ports.HTTP, nil)
}

func stopConsul(ctx context.Context, dir string, port int, done <-chan struct{}) error {
	pidFile := filepath.Join(dir, consulPidName)
	pid, err := readPidFile(pidFile)
	if err != nil || !processIs(pid, "consul") {
		return nil
	}
	ctx, cancel := deadlineOr(ctx, consulStopGrace+15*time.Second)
	defer cancel()
	if done != nil {
		select {
		case <-done:
			// This is our child, reaped: the pid may already belong to someone else.
			_ = os.Remove(pidFile)
			return nil
		default:
		}
	}
	if err := stopPid(ctx, pid, syscall.SIGTERM, consulStopGrace, done); err != nil {
		return serverError("consul", "stop", port, filepath.Join(dir, consulLogName), err)
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("consul: %w", err)
	}
	return nil
}
