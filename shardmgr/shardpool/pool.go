package shardpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

var (
	// ErrNoTopology is returned before the first topology has been applied.
	ErrNoTopology = errors.New("shardpool: no topology applied yet")
	// ErrUnknownShard is returned for a shard name the current topology does not have.
	ErrUnknownShard = errors.New("shardpool: unknown shard")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("shardpool: closed")
)

// Config bounds every pool. Per-shard max_conns and min_conns in the topology override MaxConns and MinConns.
type Config struct {
	MaxConns          int32
	MinConns          int32
	HealthCheckPeriod time.Duration
	ConnectTimeout    time.Duration
	MaxConnLifetime   time.Duration
	MaxConnIdleTime   time.Duration
	// ApplicationName is reported to PostgreSQL (pg_stat_activity), e.g. "meridian-api".
	ApplicationName string
	// Password resolves a shard's password from the reference in its settings. The default reads the named
	// environment variable or file.
	Password func(topology.Conn) (string, error)
}

// DefaultConfig returns the bounds used by API nodes.
func DefaultConfig() Config {
	return Config{
		MaxConns:          16,
		MinConns:          0,
		HealthCheckPeriod: 15 * time.Second,
		ConnectTimeout:    5 * time.Second,
		MaxConnLifetime:   time.Hour,
		MaxConnIdleTime:   5 * time.Minute,
		ApplicationName:   "meridian",
		Password:          PasswordFromEnvOrFile,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.MaxConns < 1:
		return fmt.Errorf("shardpool: MaxConns must be at least 1, got %d", c.MaxConns)
	case c.MinConns < 0 || c.MinConns > c.MaxConns:
		return fmt.Errorf("shardpool: MinConns must be within 0..MaxConns, got %d", c.MinConns)
	case c.HealthCheckPeriod <= 0:
		return fmt.Errorf("shardpool: HealthCheckPeriod must be positive")
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("shardpool: ConnectTimeout must be positive")
	case c.Password == nil:
		return fmt.Errorf("shardpool: Password must be set")
	}
	return nil
}

// PasswordFromEnvOrFile reads the password a shard's settings point at, if any.
func PasswordFromEnvOrFile(c topology.Conn) (string, error) {
	switch {
	case c.PasswordEnv != "":
		v, ok := os.LookupEnv(c.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("password environment variable %s is not set", c.PasswordEnv)
		}
		return v, nil
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}

// Target is one shard ready for queries.
type Target struct {
	Shard  string
	Region string
	Pool   *pgxpool.Pool
}

// Routed is the answer of Route: the shard's pool and the topology route of the keyspace ID.
type Routed struct {
	Target
	Route topology.Route
}

type shardPool struct {
	conn topology.Conn
	pool *pgxpool.Pool
}

// state is swapped atomically as a whole, so readers see a table and pools of the same version.
type state struct {
	table   *topology.Table
	pools   map[string]*shardPool
	targets []Target // every shard, in topology order
	// changed is closed when this state is replaced: it wakes the writes held for a frozen keyrange
	// (WriteShard) without polling and without a lock on the routing path.
	changed chan struct{}
	// counters[i] counts the requests routed through table.Routes()[i]: one atomic add per request,
	// found by the lookup's index.
	counters []*rangeCounter
	// frozenIn lists the regions with a keyrange frozen in this version (ReadRegion holds on them).
	frozenIn []string
}

// Manager owns the pools of every shard in the topology. It is safe for concurrent use.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex // serialises Apply and Close
	closed bool
	cur    atomic.Pointer[state]
	retire sync.WaitGroup
	// counters outlive the states that point at them (see countersFor); guarded by mu.
	counters map[counterKey]*rangeCounter
	// first is closed by the first Apply (WaitVersion before it); guarded by mu.
	first chan struct{}
}

// New returns a Manager with no topology; call Apply before routing.
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log}, nil
}

// Apply makes the manager follow t: pools for new shards or shards whose connection settings changed are
// created, pools of shards that left are closed once their borrowed connections come back. Pools connect
// lazily, so a shard that is down does not fail Apply; it fails the queries routed to it.
func (m *Manager) Apply(ctx context.Context, t *topology.Topology) error {
	tab, err := topology.Compile(t)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	old := m.cur.Load()
	if old != nil && old.table.Version() > tab.Version() {
		m.log.Warn("ignoring an older topology", "have", old.table.Version(), "got", tab.Version())
		return nil
	}
	next := &state{table: tab, pools: make(map[string]*shardPool, len(t.Shards)), changed: make(chan struct{}), counters: m.countersFor(tab)}
	next.frozenIn = frozenRegions(tab.Topology())
	var created []*pgxpool.Pool
	for _, s := range tab.Topology().Shards {
		if old != nil {
			if p, ok := old.pools[s.Name]; ok && p.conn == s.Conn {
				next.pools[s.Name] = p
				next.targets = append(next.targets, Target{Shard: s.Name, Region: s.Region, Pool: p.pool})
				continue
			}
		}
		pool, err := m.newPool(ctx, s)
		if err != nil {
			for _, p := range created {
				p.Close()
			}
			return fmt.Errorf("shardpool: shard %s: %w", s.Name, err)
		}
		created = append(created, pool)
		next.pools[s.Name] = &shardPool{conn: s.Conn, pool: pool}
		next.targets = append(next.targets, Target{Shard: s.Name, Region: s.Region, Pool: pool})
	}
	m.cur.Store(next)
	if old == nil && m.first != nil {
		close(m.first)
	}
	if old != nil {
		close(old.changed)
		for name, p := range old.pools {
			if q, ok := next.pools[name]; ok && q.pool == p.pool {
				continue
			}
			m.log.Info("retiring shard pool", "shard", name)
			m.retire.Add(1)
			go func(p *pgxpool.Pool) {
				defer m.retire.Done()
				p.Close() // waits for borrowed connections
			}(p.pool)
		}
	}
	m.log.Info("topology applied", "version", tab.Version(), "shards", len(next.pools), "new_pools", len(created))
	return nil
}

func (m *Manager) newPool(ctx context.Context, s topology.Shard) (*pgxpool.Pool, error) {
	pw, err := m.cfg.Password(s.Conn)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(ConnString(s.Conn, pw))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = m.cfg.MaxConns, m.cfg.MinConns
	if s.Conn.MaxConns > 0 {
		cfg.MaxConns = s.Conn.MaxConns
	}
	if s.Conn.MinConns > 0 {
		cfg.MinConns = s.Conn.MinConns
	}
	if cfg.MinConns > cfg.MaxConns {
		cfg.MinConns = cfg.MaxConns
	}
	cfg.HealthCheckPeriod = m.cfg.HealthCheckPeriod
	cfg.MaxConnLifetime = m.cfg.MaxConnLifetime
	cfg.MaxConnIdleTime = m.cfg.MaxConnIdleTime
	cfg.ConnConfig.ConnectTimeout = m.cfg.ConnectTimeout
	if m.cfg.ApplicationName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = m.cfg.ApplicationName
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// ConnString builds a PostgreSQL URL for a shard. The password, if any, is only ever passed in here.
func ConnString(c topology.Conn, password string) string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), Path: "/" + c.Database}
	if password != "" {
		u.User = url.UserPassword(c.User, password)
	} else {
		u.User = url.User(c.User)
	}
	q := url.Values{}
	if c.SSLMode != "" {
		q.Set("sslmode", c.SSLMode)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Table returns the compiled topology in force, or nil before the first Apply.
func (m *Manager) Table() *topology.Table {
	if s := m.cur.Load(); s != nil {
		return s.table
	}
	return nil
}

// WaitVersion returns the version of the topology in force once it is at least v, or ctx's error
// (with the version in force, 0 before the first Apply) when ctx ends first. It wakes on every Apply
// (the snapshot's changed channel), never on a timer: an API node answers the shard manager's
// question "do you hold v yet?" with it the moment its pools hold v.
func (m *Manager) WaitVersion(ctx context.Context, v uint64) (uint64, error) {
	for {
		s := m.cur.Load()
		var have uint64
		var changed <-chan struct{}
		if s != nil {
			have, changed = s.table.Version(), s.changed
		} else {
			changed = m.firstApply()
		}
		if s != nil && have >= v {
			return have, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return have, ctx.Err()
		}
	}
}

// firstApply returns a channel closed by the first Apply (for waits before it).
func (m *Manager) firstApply() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.first == nil {
		m.first = make(chan struct{})
	}
	if m.cur.Load() != nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return m.first
}

// Route returns the pool of the shard that owns k (after relocation) and the route itself, whose State
// tells a writer whether the keyrange is frozen for a cutover. It does not check the region: an API node
// serving its own region's data uses ReadShard and WriteShard. Route is not counted in KeyRangeCounts:
// it answers tools and cross-region look-ups, not the region's load.
func (m *Manager) Route(k shardkey.KeyspaceID) (Routed, error) {
	r, _, err := m.cur.Load().route(k)
	return r, err
}

// Shard returns one shard's target.
func (m *Manager) Shard(name string) (Target, error) {
	s := m.cur.Load()
	if s == nil {
		return Target{}, ErrNoTopology
	}
	p, ok := s.pools[name]
	if !ok {
		return Target{}, fmt.Errorf("%w %q", ErrUnknownShard, name)
	}
	sh, _ := s.table.Topology().Shard(name)
	return Target{Shard: name, Region: sh.Region, Pool: p.pool}, nil
}

// Targets returns the shards of one region, or of every region when region is "".
func (m *Manager) Targets(region string) []Target {
	s := m.cur.Load()
	if s == nil {
		return nil
	}
	if region == "" {
		return append([]Target(nil), s.targets...)
	}
	var out []Target
	for _, t := range s.targets {
		if t.Region == region {
			out = append(out, t)
		}
	}
	return out
}

// Health pings every shard and returns the error of each one that did not answer (empty when all did).
func (m *Manager) Health(ctx context.Context, timeout time.Duration) map[string]error {
	res := Scatter(ctx, m.Targets(""), ScatterOptions{PerShardTimeout: timeout}, func(ctx context.Context, t Target) (struct{}, error) {
		return struct{}{}, t.Pool.Ping(ctx)
	})
	out := make(map[string]error, len(res.Failed))
	for _, f := range res.Failed {
		out[f.Shard] = f.Err
	}
	return out
}

// Follow applies every topology received on ch until ctx ends or ch closes. A version that fails to apply
// is logged and the previous one keeps serving.
func (m *Manager) Follow(ctx context.Context, ch <-chan *topology.Topology) {
	for {
		select {
		case <-ctx.Done():
			return
		case t, ok := <-ch:
			if !ok {
				return
			}
			if err := m.Apply(ctx, t); err != nil {
				m.log.Error("topology not applied", "version", t.Version, "err", err)
			}
		}
	}
}

// Close closes every pool and waits for retired ones.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	if s := m.cur.Load(); s != nil {
		for _, p := range s.pools {
			p.pool.Close()
		}
	}
	m.retire.Wait()
}
