package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/server"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// BenchmarkRegionSearch compares, in one run, a region search through the node's handler over HTTP
// (routing, parameter checks, scatter, merge, JSON) with the same per-shard queries sent straight to the
// region's two shards with pgx, concurrently, rows decoded the same way (the baseline). The ratio
// node/pgx is what the node costs on top of the database; the two are interleaved so that machine noise
// hits both alike.
func BenchmarkRegionSearch(b *testing.B) {
	ctx := context.Background()
	pg := testenv.Postgres(b)
	topo := topology.Example()
	// Only eu-west is searched, so only its two shards get databases; the other regions' shards share the
	// first one and are never queried.
	var targets []migrate.Target
	var first topology.Conn
	for i := range topo.Shards {
		if topo.Shards[i].Region != "eu-west" {
			continue
		}
		dsn := pg.NewDatabase(b)
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			b.Fatal(err)
		}
		topo.Shards[i].Conn = topology.Conn{Host: cfg.Host, Port: int(cfg.Port), Database: cfg.Database, User: cfg.User, SSLMode: "disable", MaxConns: 8}
		first = topo.Shards[i].Conn
		targets = append(targets, migrate.Target{Shard: topo.Shards[i].Name, DSN: dsn})
	}
	for i := range topo.Shards {
		if topo.Shards[i].Region != "eu-west" {
			topo.Shards[i].Conn = first
		}
	}
	if _, err := migrate.Up(ctx, targets, migrate.Options{Concurrency: 2}); err != nil {
		b.Fatal(err)
	}
	pools, err := shardpool.New(shardpool.DefaultConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pools.Close)
	if err := pools.Apply(ctx, topo); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a := &feature.Deps{Region: "eu-west", Pools: pools, IDs: shardkey.NewGenerator(nil, nil), Log: log, Now: time.Now, FreezeWait: time.Second}
	svc, err := New(a, DefaultConfig(), Hooks{})
	if err != nil {
		b.Fatal(err)
	}
	handler, err := server.Handler(svc.Routes(), server.Options{Region: "eu-west", Log: log})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	b.Cleanup(srv.Close)
	seedJobs(b, a, 40, 10)

	query := url.Values{"q": {"golang services"}, "limit": {"20"}}
	p, err := parseSearch(query)
	if err != nil {
		b.Fatal(err)
	}
	searchURL := srv.URL + "/api/v1/jobs/search?" + query.Encode()
	client := srv.Client()
	viaNode := func() int {
		resp, err := client.Get(searchURL)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("search: %d %s %v", resp.StatusCode, body, err)
		}
		return len(body)
	}
	ranges := ownedRanges(pools.Table())
	shards := pools.Targets("eu-west")
	direct := func() int {
		var wg sync.WaitGroup
		counts := make([]int, len(shards))
		errs := make([]error, len(shards))
		for i, t := range shards {
			wg.Go(func() {
				items, err := svc.searchShard(ctx, t, ranges[t.Shard], p)
				counts[i], errs[i] = len(items), err
			})
		}
		wg.Wait()
		n := 0
		for i := range shards {
			if errs[i] != nil {
				b.Fatal(errs[i])
			}
			n += counts[i]
		}
		return n
	}
	// Warm both paths (connections, prepared statements) before measuring.
	if viaNode() == 0 || direct() == 0 {
		b.Fatal("the search finds nothing")
	}

	b.ReportAllocs()
	var node, base time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		viaNode()
		t1 := time.Now()
		direct()
		base += time.Since(t1)
		node += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(node.Nanoseconds())/float64(n), "node-ns/search")
	b.ReportMetric(float64(base.Nanoseconds())/float64(n), "pgx-ns/search")
	b.ReportMetric(float64(node)/float64(base), "node/pgx")
}

// seedJobs inserts users owners, each with perOwner open jobs, straight into their shards; a third of
// the jobs mention golang in the title, more in the description.
func seedJobs(b *testing.B, a *feature.Deps, owners, perOwner int) {
	b.Helper()
	ctx := context.Background()
	words := []string{"golang", "rust", "design", "data", "services", "kubernetes", "postgresql", "mobile"}
	for o := 0; o < owners; o++ {
		email := fmt.Sprintf("bench-owner-%d@example.test", o)
		k := shardkey.NewKeyspaceID(0x40, []byte(email))
		uid, err := a.IDs.New(shardkey.KindUser, k)
		if err != nil {
			b.Fatal(err)
		}
		shard, err := a.WriteShard(ctx, k)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := shard.Pool.Exec(ctx, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
			VALUES ($1, $2, $3, $3, 'Bench', 'client', 'eu-west')`, k.Bytes(), uid.Bytes(), email); err != nil {
			b.Fatal(err)
		}
		var batch pgx.Batch
		for j := 0; j < perOwner; j++ {
			id, err := a.IDs.New(shardkey.KindJob, k)
			if err != nil {
				b.Fatal(err)
			}
			n := o*perOwner + j
			title := fmt.Sprintf("%s %s engineer", words[n%3], words[3+n%5])
			desc := fmt.Sprintf("We build %s and %s services with %s.", words[n%8], words[(n+2)%8], words[(n+5)%8])
			batch.Queue(`INSERT INTO core.jobs (ksid, id, owner_id, title, description, skills) VALUES ($1, $2, $3, $4, $5, $6)`,
				k.Bytes(), id.Bytes(), uid.Bytes(), title, desc, []string{words[n%8], words[(n+1)%8]})
		}
		if err := shard.Pool.SendBatch(ctx, &batch).Close(); err != nil {
			b.Fatal(err)
		}
	}
}
