// Package apibench measures the API node against the same queries sent straight to PostgreSQL with pgx,
// in one run, so a noisy machine moves both sides alike: read the ratios.
//
//	go test -run '^$' -bench . -benchtime 2000x ./bench/api/
package apibench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// concurrency is the number of clients at saturation.
const concurrency = 16

// run spreads n calls of fn over concurrency goroutines and returns the elapsed time.
func run(b *testing.B, n int, fn func() error) time.Duration {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := fn(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// latency is the mean time of fn over n calls on one goroutine.
func latency(b *testing.B, n int, fn func() error) time.Duration {
	b.Helper()
	start := time.Now()
	for range n {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(n)
}

func get(c *http.Client, url, token string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return nil
}

func shardPool(b *testing.B, c *cluster.Cluster, k shardkey.KeyspaceID) *pgxpool.Pool {
	b.Helper()
	tab, err := topology.Compile(c.Topology)
	if err != nil {
		b.Fatal(err)
	}
	r, err := tab.Lookup(k)
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), c.DSN[r.Shard.Name]+"&pool_max_conns=32")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// BenchmarkUsersMe: GET /api/v1/users/me through the node against the same single-row query with pgx.
// Reported: throughput of both at saturation and their ratio (goal: node/pgx >= 0.33), and where one
// request's time goes on a single connection: the HTTP stack (GET /healthz), token verification, the
// database query, and the whole request.
func BenchmarkUsersMe(b *testing.B) {
	c := cluster.Start(b) // every region: the email directory of a new user may be in any of them
	client := c.NodeClient(b, "eu-west")
	base := c.Nodes["eu-west"]
	u, err := cluster.Register(client, base, fmt.Sprintf("me-%d@bench.test", time.Now().UnixNano()), "freelancer", "eu-west")
	if err != nil {
		b.Fatal(err)
	}
	id, err := shardkey.ParseID(u.User.ID)
	if err != nil {
		b.Fatal(err)
	}
	pool := shardPool(b, c, id.KeyspaceID())
	ctx := context.Background()
	query := func() error {
		var email, name, role, region string
		var created time.Time
		var uid []byte
		return pool.QueryRow(ctx, `SELECT id, email, name, role, region, created_at FROM auth.users WHERE ksid = $1 AND id = $2 AND deleted_at IS NULL`,
			id.KeyspaceID().Bytes(), id.Bytes()).Scan(&uid, &email, &name, &role, &region, &created)
	}
	me := func() error { return get(client, base+"/api/v1/users/me", u.AccessToken) }
	keys, err := tokenissue.LoadKeyDir(c.KeyDir)
	if err != nil {
		b.Fatal(err)
	}
	// The node verifies with a cache of verified tokens; the signature check itself is what a cold
	// token costs.
	uncached, err := accesstoken.NewVerifier(accesstoken.Config{Issuer: cluster.TokenIssuer, Audience: cluster.TokenAudience}, keys.Public(), nil)
	if err != nil {
		b.Fatal(err)
	}
	cached, err := accesstoken.NewVerifier(accesstoken.Config{Issuer: cluster.TokenIssuer, Audience: cluster.TokenAudience, CacheSize: 1024}, keys.Public(), nil)
	if err != nil {
		b.Fatal(err)
	}
	// Warm both paths (connections, caches).
	run(b, 200, me)
	run(b, 200, query)
	b.ResetTimer()
	node := run(b, b.N, me)
	direct := run(b, b.N, query)
	b.StopTimer()
	nodeRPS := float64(b.N) / node.Seconds()
	directRPS := float64(b.N) / direct.Seconds()
	b.ReportMetric(nodeRPS, "node_req/s")
	b.ReportMetric(directRPS, "pgx_req/s")
	b.ReportMetric(nodeRPS/directRPS, "node/pgx")
	n := min(b.N, 500)
	b.ReportMetric(float64(latency(b, n, func() error { return get(client, base+"/healthz", "") }).Microseconds()), "µs_http")
	b.ReportMetric(float64(latency(b, n, func() error { _, err := uncached.Verify(u.AccessToken); return err }).Nanoseconds())/1000, "µs_auth_cold")
	b.ReportMetric(float64(latency(b, n, func() error { _, err := cached.Verify(u.AccessToken); return err }).Nanoseconds())/1000, "µs_auth_cached")
	b.ReportMetric(float64(latency(b, n, query).Microseconds()), "µs_db")
	b.ReportMetric(float64(latency(b, n, me).Microseconds()), "µs_total")
	b.ReportMetric(0, "ns/op") // the time of one b.N loop is meaningless here; the metrics above are the result
}

// BenchmarkJobSearch: GET /api/v1/jobs/search across the region's two shards through the node against
// the same ranked query on both shards straight with pgx (run concurrently and merged, as the node does).
func BenchmarkJobSearch(b *testing.B) {
	c := cluster.Start(b) // every region: the email directory of a new user may be in any of them
	client := c.NodeClient(b, "eu-west")
	base := c.Nodes["eu-west"]
	// Jobs of 40 clients land on both shards of the region.
	for i := range 40 {
		u, err := c.RegisterVerified(client, base, fmt.Sprintf("client-%d-%d@bench.test", i, time.Now().UnixNano()), "client", "eu-west")
		if err != nil {
			b.Fatal(err)
		}
		for j := range 5 {
			title := []string{"PostgreSQL sharding expert", "Go backend engineer", "React front-end developer", "Data pipeline with Go and PostgreSQL", "Mobile app designer"}[(i+j)%5]
			body := map[string]any{"title": title, "description": "We need help with " + title + " for a marketplace.", "skills": []string{"go", "postgresql"}, "budget_min": 100, "budget_max": 1000, "currency": "EUR", "remote": true}
			if err := cluster.PostJSON(client, base+"/api/v1/jobs/", u.AccessToken, body, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	var pools []*pgxpool.Pool
	for _, s := range c.Topology.ShardsIn("eu-west") {
		p, err := pgxpool.New(context.Background(), c.DSN[s.Name]+"&pool_max_conns=32")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		pools = append(pools, p)
	}
	ctx := context.Background()
	direct := func() error {
		var wg sync.WaitGroup
		errs := make([]error, len(pools))
		for i, p := range pools {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rows, err := p.Query(ctx, `
					SELECT j.id, j.owner_id, j.title, j.description, j.skills, j.budget_min, j.budget_max, j.currency, j.remote, j.status, j.created_at, j.updated_at, ts_rank(j.search, q) AS rank
					  FROM core.jobs j, websearch_to_tsquery('english', $1) q
					 WHERE j.search @@ q AND j.status = 'open'
					 ORDER BY rank DESC, j.id DESC LIMIT 21`, "postgresql sharding")
				if err != nil {
					errs[i] = err
					return
				}
				for rows.Next() {
					if _, err := rows.Values(); err != nil {
						errs[i] = err
					}
				}
				rows.Close()
				if errs[i] == nil {
					errs[i] = rows.Err()
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	search := func() error { return get(client, base+"/api/v1/jobs/search?q=postgresql+sharding", "") }
	run(b, 100, search)
	run(b, 100, direct)
	b.ResetTimer()
	node := run(b, b.N, search)
	pg := run(b, b.N, direct)
	b.StopTimer()
	nodeRPS, directRPS := float64(b.N)/node.Seconds(), float64(b.N)/pg.Seconds()
	b.ReportMetric(nodeRPS, "node_req/s")
	b.ReportMetric(directRPS, "pgx_req/s")
	b.ReportMetric(nodeRPS/directRPS, "node/pgx")
	n := min(b.N, 300)
	b.ReportMetric(float64(latency(b, n, direct).Microseconds()), "µs_db")
	b.ReportMetric(float64(latency(b, n, search).Microseconds()), "µs_total")
	b.ReportMetric(0, "ns/op")
}
