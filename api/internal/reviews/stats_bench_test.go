package reviews

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/migrate"
)

// BenchmarkStats compares, in one run, computing a user's stats from PostgreSQL with reading them
// from the cache (a hit) and with the miss path (Redis lookup, PostgreSQL, check-and-set store).
// Compare the ns/op of the sub-benchmarks as ratios; the machine's speed cancels out.
func BenchmarkStats(b *testing.B) {
	ctx := context.Background()
	dsn := testenv.Postgres(b).NewDatabase(b)
	if _, err := migrate.Up(ctx, []migrate.Target{{Shard: "bench", DSN: dsn}}, migrate.Options{}); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(b)})
	b.Cleanup(func() { rdb.Close() })

	ids := shardkey.NewGenerator(time.Now, nil)
	k := shardkey.NewKeyspaceID(0x40, []byte(fmt.Sprint("bench-", time.Now().UnixNano())))
	user, _ := ids.New(shardkey.KindUser, k)
	if _, err := pool.Exec(ctx, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
		VALUES ($1, $2, 'b@example.test', 'b@example.test', 'Bench', 'freelancer', 'eu-west')`, k.Bytes(), user.Bytes()); err != nil {
		b.Fatal(err)
	}
	const reviews = 200 // a well-reviewed freelancer
	for i := range reviews {
		id, _ := ids.New(shardkey.KindReview, k)
		job, _ := ids.New(shardkey.KindJob, k)
		from, _ := ids.New(shardkey.KindUser, shardkey.NewKeyspaceID(0x20, fmt.Appendf(nil, "r%d", i)))
		contract, _ := ids.New(shardkey.KindContract, k)
		if _, err := pool.Exec(ctx, `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, contract_id, status, rating, comment)
			VALUES ($1, $2, $3, $4, $5, $6, 'verified', $7, 'ok')`, k.Bytes(), id.Bytes(), from.Bytes(), user.Bytes(), job.Bytes(), contract.Bytes(), i%5+1); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE core.reviews`); err != nil {
		b.Fatal(err)
	}
	c := newStatsCache(rdb, DefaultConfig(), time.Now, testLogB())

	b.Run("postgres", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := countRatings(ctx, pool, k, user); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cache-hit", func(b *testing.B) {
		l := c.lookup(ctx, user)
		d, _ := countRatings(ctx, pool, k, user)
		c.store(ctx, user, l.gen, d)
		b.ReportAllocs()
		for b.Loop() {
			if l := c.lookup(ctx, user); !l.hit {
				b.Fatal("miss")
			}
		}
	})
	b.Run("cache-miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.invalidate(ctx, user)
			l := c.lookup(ctx, user)
			d, err := countRatings(ctx, pool, k, user)
			if err != nil {
				b.Fatal(err)
			}
			c.store(ctx, user, l.gen, d)
		}
	})
}
