package shardpool

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// shardTopology returns the example topology with each of its six shards pointed at a fresh database of
// the test's PostgreSQL.
func shardTopology(t *testing.T) *topology.Topology {
	t.Helper()
	pg := testenv.Postgres(t)
	topo := topology.Example()
	for i := range topo.Shards {
		cfg, err := pgx.ParseConfig(pg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		topo.Shards[i].Conn = topology.Conn{Host: cfg.Host, Port: int(cfg.Port), Database: cfg.Database, User: cfg.User, SSLMode: "disable", MaxConns: 4}
	}
	return topo
}

func newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func currentDB(ctx context.Context, tg Target) (string, error) {
	var db string
	err := tg.Pool.QueryRow(ctx, "SELECT current_database()").Scan(&db)
	return db, err
}

func TestRouteReachesTheOwningShard(t *testing.T) {
	ctx := context.Background()
	topo := shardTopology(t)
	m := newManager(t)
	if _, err := m.Route(shardkey.NewKeyspaceID(0x20, []byte("x"))); !errors.Is(err, ErrNoTopology) {
		t.Fatalf("Route before Apply: %v", err)
	}
	if err := m.Apply(ctx, topo); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		k := shardkey.NewKeyspaceID(shardkey.Region(0x20+0x20*(i%3)), []byte{byte(i), byte(i >> 8)})
		r, err := m.Route(k)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := topo.Shard(r.Route.Shard.Name)
		if !r.Route.Range.Contains(k) || r.Shard != want.Name || r.Region != want.Region {
			t.Fatalf("ksid %s routed to %+v", k, r.Route)
		}
		if i%20 == 0 {
			db, err := currentDB(ctx, r.Target)
			if err != nil {
				t.Fatal(err)
			}
			if db != want.Conn.Database {
				t.Fatalf("ksid %s: pool of %s is connected to %s, want %s", k, r.Shard, db, want.Conn.Database)
			}
		}
	}
	if _, err := m.Route(shardkey.NewKeyspaceID(0x99, []byte("x"))); !errors.Is(err, topology.ErrNoShard) {
		t.Fatalf("unknown region: %v", err)
	}
	if got := len(m.Targets("eu-west")); got != 2 {
		t.Fatalf("Targets(eu-west) = %d shards, want 2", got)
	}
	if got := len(m.Targets("")); got != 6 {
		t.Fatalf("Targets() = %d shards, want 6", got)
	}
	if _, err := m.Shard("nope"); !errors.Is(err, ErrUnknownShard) {
		t.Fatalf("Shard(nope): %v", err)
	}
}

func TestApplyKeepsUnchangedPoolsAndRetiresOthers(t *testing.T) {
	ctx := context.Background()
	topo := shardTopology(t)
	m := newManager(t)
	if err := m.Apply(ctx, topo); err != nil {
		t.Fatal(err)
	}
	before := map[string]Target{}
	for _, tg := range m.Targets("") {
		before[tg.Shard] = tg
	}
	// Move us-east-2's keyrange onto a new shard and drop us-east-2.
	next := topo.Clone()
	next.Version++
	spare := next.Shards[1]
	spare.Name = "us-east-3"
	next.Shards[1] = spare
	next.KeyRanges[1].Shard = "us-east-3"
	if err := m.Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	after := map[string]Target{}
	for _, tg := range m.Targets("") {
		after[tg.Shard] = tg
	}
	if after["us-east-1"].Pool != before["us-east-1"].Pool {
		t.Error("an unchanged shard got a new pool")
	}
	if _, ok := after["us-east-2"]; ok {
		t.Error("a shard that left the topology still has a pool")
	}
	if after["us-east-3"].Pool == nil || after["us-east-3"].Pool == before["us-east-2"].Pool {
		t.Error("the new shard did not get its own pool")
	}
	m.retire.Wait()
	if err := before["us-east-2"].Pool.Ping(ctx); err == nil {
		t.Error("the retired pool still answers")
	}
	// An older version does not roll the manager back.
	if err := m.Apply(ctx, topo); err != nil {
		t.Fatal(err)
	}
	if m.Table().Version() != next.Version {
		t.Errorf("version %d after applying an older topology, want %d", m.Table().Version(), next.Version)
	}
	// An invalid topology is refused and the current one keeps serving.
	bad := next.Clone()
	bad.Version++
	bad.KeyRanges = bad.KeyRanges[1:]
	if err := m.Apply(ctx, bad); !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("invalid topology: %v", err)
	}
	if m.Table().Version() != next.Version {
		t.Error("an invalid topology replaced the current one")
	}
}

func TestFollowAppliesUpdates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	topo := shardTopology(t)
	m := newManager(t)
	ch := make(chan *topology.Topology)
	done := make(chan struct{})
	go func() { m.Follow(ctx, ch); close(done) }()
	ch <- topo
	next := topo.Clone()
	next.Version = 7
	ch <- next
	close(ch)
	<-done
	if m.Table() == nil || m.Table().Version() != 7 {
		t.Fatalf("Follow did not apply the last version: %v", m.Table())
	}
}

func TestScatter(t *testing.T) {
	ctx := context.Background()
	topo := shardTopology(t)
	// One shard points at a port nobody listens on.
	topo.Shards[3].Conn.Port = 1
	m := newManager(t)
	if err := m.Apply(ctx, topo); err != nil {
		t.Fatal(err)
	}
	targets := m.Targets("")

	t.Run("partial result names the failed shard", func(t *testing.T) {
		res := Scatter(ctx, targets, ScatterOptions{Concurrency: 3, PerShardTimeout: 5 * time.Second}, currentDB)
		if len(res.Values) != 5 || len(res.Failed) != 1 || res.Failed[0].Shard != topo.Shards[3].Name || !res.Partial() {
			t.Fatalf("values %v failed %v", res.Values, res.Failed)
		}
		for i, v := range res.Values {
			if i > 0 && v.Shard == res.Values[i-1].Shard {
				t.Fatal("duplicate shard in values")
			}
			if sh, _ := topo.Shard(v.Shard); sh.Conn.Database != v.Value {
				t.Fatalf("shard %s answered from %s", v.Shard, v.Value)
			}
		}
		if got := res.FailedShards(); len(got) != 1 || got[0] != topo.Shards[3].Name {
			t.Fatalf("FailedShards = %v", got)
		}
	})

	t.Run("per-shard deadline", func(t *testing.T) {
		res := Scatter(ctx, targets[:2], ScatterOptions{PerShardTimeout: 100 * time.Millisecond}, func(ctx context.Context, tg Target) (int, error) {
			if tg.Shard == targets[0].Shard {
				_, err := tg.Pool.Exec(ctx, "SELECT pg_sleep(10)")
				return 0, err
			}
			return 1, nil
		})
		if len(res.Values) != 1 || len(res.Failed) != 1 || res.Failed[0].Shard != targets[0].Shard {
			t.Fatalf("values %v failed %v", res.Values, res.Failed)
		}
		if !errors.Is(res.Failed[0].Err, context.DeadlineExceeded) && !strings.Contains(res.Failed[0].Err.Error(), "timeout") {
			t.Fatalf("slow shard failed with %v, want a deadline error", res.Failed[0].Err)
		}
	})

	t.Run("concurrency is bounded", func(t *testing.T) {
		var inflight, peak atomic.Int32
		res := Scatter(ctx, targets, ScatterOptions{Concurrency: 2}, func(ctx context.Context, tg Target) (int, error) {
			n := inflight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			inflight.Add(-1)
			return 0, nil
		})
		if len(res.Values) != len(targets) {
			t.Fatalf("%d values", len(res.Values))
		}
		if peak.Load() > 2 {
			t.Fatalf("%d calls ran at once with Concurrency 2", peak.Load())
		}
	})

	t.Run("a panic fails one shard", func(t *testing.T) {
		res := Scatter(ctx, targets[:3], ScatterOptions{}, func(ctx context.Context, tg Target) (int, error) {
			if tg.Shard == targets[1].Shard {
				panic("boom")
			}
			return 1, nil
		})
		if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Err.Error(), "boom") {
			t.Fatalf("failed = %v", res.Failed)
		}
	})

	t.Run("cancelled parent", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		res := Scatter(cctx, targets, ScatterOptions{Concurrency: 1}, currentDB)
		if len(res.Values)+len(res.Failed) != len(targets) || len(res.Failed) == 0 {
			t.Fatalf("values %d failed %d", len(res.Values), len(res.Failed))
		}
	})

	t.Run("health", func(t *testing.T) {
		h := m.Health(ctx, 2*time.Second)
		if len(h) != 1 || h[topo.Shards[3].Name] == nil {
			t.Fatalf("Health = %v", h)
		}
	})
}

func TestConfig(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"MaxConns":          func(c *Config) { c.MaxConns = 0 },
		"MinConns":          func(c *Config) { c.MinConns = 99 },
		"HealthCheckPeriod": func(c *Config) { c.HealthCheckPeriod = 0 },
		"ConnectTimeout":    func(c *Config) { c.ConnectTimeout = -1 },
		"Password":          func(c *Config) { c.Password = nil },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPasswordAndConnString(t *testing.T) {
	t.Setenv("MERIDIAN_TEST_PW", "s3cr:t@/")
	c := topology.Conn{Host: "db.local", Port: 6432, Database: "meridian_us_east_1", User: "app", SSLMode: "require", PasswordEnv: "MERIDIAN_TEST_PW"}
	pw, err := PasswordFromEnvOrFile(c)
	if err != nil || pw != "s3cr:t@/" {
		t.Fatalf("password = %q, %v", pw, err)
	}
	cfg, err := pgx.ParseConfig(ConnString(c, pw))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "db.local" || cfg.Port != 6432 || cfg.Database != "meridian_us_east_1" || cfg.User != "app" || cfg.Password != pw {
		t.Fatalf("parsed back %+v", cfg)
	}
	c.PasswordEnv = "MERIDIAN_TEST_UNSET_PW"
	if _, err := PasswordFromEnvOrFile(c); err == nil || !strings.Contains(err.Error(), "MERIDIAN_TEST_UNSET_PW") {
		t.Fatalf("unset env: %v", err)
	}
	c.PasswordEnv, c.PasswordFile = "", t.TempDir()+"/missing"
	if _, err := PasswordFromEnvOrFile(c); err == nil {
		t.Fatal("missing password file accepted")
	}
}
