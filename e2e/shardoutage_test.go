package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// A region's PostgreSQL stopped under load: every answer through the region's router is a success or
// a 503 with Retry-After (shard_unavailable from the node; region_unavailable from the router, which
// retries a read's 503 on another node and has none left, or once Consul takes the node out), never
// a 500; after the restart the region serves again. The region's shards run on a
// PostgreSQL of the test's own, since the shared test server must stay up for the other tests.
func TestE2EShardDownUnderLoadIs503(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real API nodes, a router and a PostgreSQL")
	}
	const region = "us-east"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := cluster.Start(t) // every region: the email directory of a new user may be in any of them
	via, _ := c.StartRouter(t, region, nil)

	// The region's shards move to a PostgreSQL the test may stop.
	pgDir := filepath.Join(t.TempDir(), "pg")
	pg, err := local.StartPostgres(ctx, local.DefaultPostgresConfig(pgDir, 0), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	conns := map[string]topology.Conn{}
	var targets []migrate.Target
	for _, s := range c.Topology.Shards {
		if s.Region != region {
			continue
		}
		name := "outage_" + s.Name
		name = sanitizeDB(name)
		if err := pg.CreateDatabase(ctx, name); err != nil {
			t.Fatal(err)
		}
		pc, err := pgx.ParseConfig(pg.DSN(name))
		if err != nil {
			t.Fatal(err)
		}
		conns[s.Name] = topology.Conn{Host: pc.Host, Port: int(pc.Port), Database: pc.Database, User: pc.User, SSLMode: "disable", MaxConns: 32}
		targets = append(targets, migrate.Target{Shard: s.Name, DSN: pg.DSN(name)})
	}
	if _, err := migrate.Up(ctx, targets, migrate.Options{Concurrency: len(targets)}); err != nil {
		t.Fatal(err)
	}
	cc := testenv.ConsulClient(t, c.ConsulAgent, local.RoleShardmgr)
	written, err := topostore.NewStore(cc, c.Key).Modify(ctx, func(tp *topology.Topology) error {
		for i := range tp.Shards {
			if conn, ok := conns[tp.Shards[i].Name]; ok {
				tp.Shards[i].Conn = conn
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitTopology(t, c.OpsURL(c.Nodes[region]), written.Version)

	// Users homed on those shards, one per load worker.
	hc := cluster.Client()
	const workers = 8
	tokens := make([]string, workers)
	for i := range tokens {
		r, err := c.RegisterVerified(hc, via, fmt.Sprintf("outage-%d-%d@example.com", i, time.Now().UnixNano()), "client", region)
		if err != nil {
			t.Fatal(err)
		}
		tokens[i] = r.AccessToken
	}

	type answer struct {
		status int
		code   string
		retry  string
		after  bool // sent after the stop began
	}
	var (
		mu      sync.Mutex
		answers []answer
		stopped = make(chan struct{})
		done    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(token string) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				after := false
				select {
				case <-stopped:
					after = true
				default:
				}
				// Reads, which the router retries on another node and answers region_unavailable when none
				// is left, and writes, which it does not retry, so the node's own answer comes through.
				var req *http.Request
				if n%2 == 0 {
					req, _ = http.NewRequestWithContext(ctx, http.MethodGet, via+"/api/v1/users/me", nil)
				} else {
					req, _ = http.NewRequestWithContext(ctx, http.MethodPost, via+"/api/v1/jobs/", strings.NewReader(
						`{"title":"Outage test","description":"x","skills":["go"],"budget_min":100,"budget_max":200,"currency":"USD","remote":true}`))
					req.Header.Set("Content-Type", "application/json")
				}
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := hc.Do(req)
				a := answer{after: after}
				if err != nil {
					a.code = "transport: " + err.Error()
				} else {
					var body struct {
						Error struct{ Code string } `json:"error"`
					}
					data, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					_ = json.Unmarshal(data, &body)
					a.status, a.code, a.retry = resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After")
				}
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			}
		}(tokens[i])
	}
	time.Sleep(time.Second)
	close(stopped)
	if err := pg.Stop(ctx); err != nil { // fast shutdown: sessions end with 57P01, new ones are refused
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	close(done)
	wg.Wait()

	var okBefore, unavailable, shardUnavailable int
	for _, a := range answers {
		switch {
		case a.status == http.StatusOK || a.status == http.StatusCreated:
			if !a.after {
				okBefore++
			}
		case a.status == http.StatusServiceUnavailable && a.retry != "" && (a.code == "shard_unavailable" || a.code == "region_unavailable"):
			unavailable++
			if a.code == "shard_unavailable" {
				shardUnavailable++
			}
		default:
			t.Errorf("answer during the outage: %d %q (Retry-After %q)", a.status, a.code, a.retry)
		}
	}
	t.Logf("%d answers: %d successes before the stop, %d 503 (%d shard_unavailable)", len(answers), okBefore, unavailable, shardUnavailable)
	if okBefore == 0 || unavailable == 0 || shardUnavailable == 0 {
		t.Fatalf("the load did not see both sides of the outage: %d successes before, %d 503, %d from the node", okBefore, unavailable, shardUnavailable)
	}

	// The same PostgreSQL comes back (same folder, same port): the region serves again.
	pg, err = local.StartPostgres(ctx, local.DefaultPostgresConfig(pgDir, pg.Port()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, via+"/api/v1/users/me", nil)
		req.Header.Set("Authorization", "Bearer "+tokens[0])
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the region did not serve again after PostgreSQL restarted: %v", err)
		}
	}
}

// waitTopology waits until the node at base has applied topology version v.
func waitTopology(t *testing.T, base string, v uint64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			var ready struct {
				Topology struct {
					Version uint64 `json:"version"`
				} `json:"topology"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&ready)
			resp.Body.Close()
			if ready.Topology.Version >= v {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not apply topology %d", base, v)
		}
	}
}

func sanitizeDB(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
