// Package movebench measures online moves (shardmgr/move) against baselines in the same run, so a
// noisy machine moves both sides alike: the move's copy step against a raw COPY of the same rows
// between the same two databases, and the write pause of the cutover as writers routed through
// shardpool.WriteShard see it.
//
//	go test -run '^$' -bench . -benchtime 5x ./bench/move/
//
// -benchtime Nx scales the work: BenchmarkCopy seeds 2,000×N users (7 rows each, in four tables),
// BenchmarkCutoverPause runs max(16, N) cutovers. At 1x (the test command) both stay quick.
package movebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The moved keyrange is half of us-east-1's "20-2080"; us-east-2 (same region) receives it.
var (
	whole    = shardkey.MustParseKeyRange("20-2080")
	moved    = shardkey.MustParseKeyRange("2040-2080")
	shardA   = "us-east-1"
	shardB   = "us-east-2"
	region   = "us-east"
	rowsUser = 7 // auth.users, core.profiles, 3 core.jobs, 2 core.audit_log
)

// bench is one benchmark's deployment: the fixture with us-east-1's keyrange split at 2040, pools
// to both shards, a shard manager following the topology as an API node does (the fleet the
// cutover waits for), and the move records and lock under keys of its own.
type bench struct {
	b        *testing.B
	f        *fixture.Fixture
	db       map[string]*pgxpool.Pool
	mgr      *shardpool.Manager
	prefix   string
	lockKey  string
	teardown []func()
}

func setup(b *testing.B) *bench {
	b.Helper()
	f := fixture.New(b, fixture.Options{Shards: true, Consul: true, MaxConns: 8})
	ctx := context.Background()
	if _, err := f.Store.Modify(ctx, func(t *topology.Topology) error {
		for i, a := range t.KeyRanges {
			if a.Range == whole {
				lo, hi, err := whole.SplitAt(shardkey.KeyspaceID(moved.Start))
				if err != nil {
					return err
				}
				t.KeyRanges[i].Range = lo
				t.KeyRanges = append(t.KeyRanges, topology.Assignment{Range: hi, Shard: a.Shard, State: topology.Serving})
				return nil
			}
		}
		return errors.New("no keyrange " + whole.String())
	}); err != nil {
		b.Fatal(err)
	}
	e := &bench{b: b, f: f, db: map[string]*pgxpool.Pool{}, prefix: "meridian-test/" + f.Prefix + "/moves/", lockKey: "meridian-test/" + f.Prefix + "/lock"}
	for _, sh := range []string{shardA, shardB} {
		p, err := pgxpool.New(ctx, f.DSN[sh])
		if err != nil {
			b.Fatal(err)
		}
		e.db[sh] = p
	}
	// PostgreSQL's logical replication launcher starts at most one apply worker per
	// wal_retrieve_retry_interval (5 s by default) across the cluster: a move started within 5 s of
	// the previous one waits that long for its subscription to begin. Moves back to back are this
	// benchmark's artefact, so the private test server gets a short interval.
	for _, q := range []string{"ALTER SYSTEM SET wal_retrieve_retry_interval = '100ms'", "SELECT pg_reload_conf()"} {
		if _, err := e.db[shardA].Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	w, err := topostore.NewWatcher(f.Consul, topostore.WatcherConfig{Key: f.Key})
	if err != nil {
		b.Fatal(err)
	}
	if e.mgr, err = shardpool.New(shardpool.DefaultConfig(), nil); err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, unsub := w.Subscribe(4)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = w.Run(wctx) }()
	go func() { defer wg.Done(); e.mgr.Follow(wctx, ch) }()
	b.Cleanup(func() {
		for _, fn := range e.teardown {
			fn()
		}
		dropReplication(e.db[shardA], e.db[shardB])
		dropReplication(e.db[shardB], e.db[shardA])
		cancel()
		unsub()
		wg.Wait()
		e.mgr.Close()
		for _, p := range e.db {
			p.Close()
		}
		_, _ = f.Consul.KV().DeleteTree(e.prefix, nil)
	})
	<-w.Ready()
	return e
}

// dropReplication removes what a failed move may leave (testenv could not drop the databases
// otherwise): subscriptions on sub without reaching the publisher, then the slots on pub.
func dropReplication(sub, pub *pgxpool.Pool) {
	ctx := context.Background()
	rows, _ := sub.Query(ctx, "SELECT subname FROM pg_subscription WHERE subname LIKE 'meridian_move_%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
	subs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, s := range subs {
		_, _ = sub.Exec(ctx, "ALTER SUBSCRIPTION "+s+" DISABLE")
		_, _ = sub.Exec(ctx, "ALTER SUBSCRIPTION "+s+" SET (slot_name = NONE)")
		_, _ = sub.Exec(ctx, "DROP SUBSCRIPTION "+s)
	}
	_, _ = pub.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL")
	_, _ = pub.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active")
}

// managerFleet is the region's one "API node": the cutover waits until its manager applied the
// version, which is what shardmgr/fleet asks of every registered node.
type managerFleet struct{ mgr *shardpool.Manager }

func (f managerFleet) WaitApplied(ctx context.Context, _, _ string, version uint64) error {
	for {
		if tab := f.mgr.Table(); tab != nil && tab.Version() >= version {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Microsecond):
		}
	}
}

func (e *bench) runner() *move.Runner {
	cfg := move.DefaultConfig()
	cfg.Consul, cfg.Topology = e.f.Consul, e.f.Store
	cfg.Fleet = managerFleet{e.mgr}
	cfg.Prefix, cfg.LockKey = e.prefix, e.lockKey
	cfg.LockDelay = time.Millisecond
	cfg.Poll = 10 * time.Millisecond // the copy's wait is timed: poll finely
	cfg.FreezeBackoff = 100 * time.Millisecond
	cfg.DeletePause = time.Millisecond
	r, err := move.New(cfg)
	if err != nil {
		e.b.Fatal(err)
	}
	return r
}

// seed writes users of the moved keyrange on shard, each with a profile, three jobs and two audit
// rows, spread evenly over the keyrange.
func (e *bench) seed(shard string, users int) {
	e.b.Helper()
	ctx := context.Background()
	lo, hi := ksidBytes(moved)
	step := (moved.End - moved.Start) / uint64(users)
	if _, err := e.db[shard].Exec(ctx, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
		 SELECT int8send($1::bigint + i * $2::bigint), decode(md5('u' || i) || '00000000', 'hex'),
		        'u' || i || '@bench.test', 'u' || i || '@bench.test', 'User ' || i, 'client', '20'
		 FROM generate_series(0, $3 - 1) i`, int64(moved.Start), int64(step), users); err != nil {
		e.b.Fatalf("seeding users: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO core.profiles (ksid, user_id, headline, bio, skills)
		 SELECT ksid, id, 'Benchmark headline', repeat('A bio of some length. ', 10), '{go,sql,postgres}'
		 FROM auth.users WHERE ksid >= $1 AND ksid < $2`,
		`INSERT INTO core.jobs (ksid, id, owner_id, title, description, skills, budget_min, budget_max)
		 SELECT u.ksid, decode(md5('j' || j || encode(u.id, 'hex')) || '00000000', 'hex'), u.id, 'Job ' || j,
		        repeat('Something to do, described. ', 8), '{go,sql}', 100, 200
		 FROM auth.users u, generate_series(1, 3) j WHERE u.ksid >= $1 AND u.ksid < $2`,
		`INSERT INTO core.audit_log (ksid, id, action, target)
		 SELECT u.ksid, decode(md5('a' || j || encode(u.id, 'hex')) || '00000000', 'hex'), 'bench.seed', 'user'
		 FROM auth.users u, generate_series(1, 2) j WHERE u.ksid >= $1 AND u.ksid < $2`,
	} {
		if _, err := e.db[shard].Exec(ctx, q, lo, hi); err != nil {
			e.b.Fatalf("seeding: %v", err)
		}
	}
	if _, err := e.db[shard].Exec(ctx, "ANALYZE"); err != nil {
		e.b.Fatal(err)
	}
}

func ksidBytes(kr shardkey.KeyRange) ([]byte, []byte) {
	return shardkey.KeyspaceID(kr.Start).Bytes(), shardkey.KeyspaceID(kr.End).Bytes()
}

// table is a sharded table and its stored (not generated) columns, which are what COPY and
// logical replication carry.
type table struct {
	name string
	cols string
}

func tables(ctx context.Context, db *pgxpool.Pool) ([]table, error) {
	rows, err := db.Query(ctx, `SELECT table_schema || '.' || table_name, string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
		FROM information_schema.columns
		WHERE table_schema IN ('auth', 'core', 'ai') AND is_generated = 'NEVER'
		  AND (table_schema, table_name) IN (SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = 'ksid')
		  AND (table_schema, table_name) IN (SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')
		GROUP BY 1 ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var t table
		return t, r.Scan(&t.name, &t.cols)
	})
}

// rawCopy copies the rows of kr of every sharded table from src to dst with COPY ... TO STDOUT piped
// into COPY ... FROM STDIN, in the text format, as the subscription's table sync does, with the
// target's triggers and foreign keys off as for a replication worker. It returns the rows copied.
func rawCopy(ctx context.Context, src, dst *pgxpool.Pool, kr shardkey.KeyRange) (int64, error) {
	ts, err := tables(ctx, src)
	if err != nil {
		return 0, err
	}
	in, err := src.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer in.Release()
	out, err := dst.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer out.Release()
	if _, err := out.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		return 0, err
	}
	defer func() { _, _ = out.Exec(context.WithoutCancel(ctx), "RESET session_replication_role") }()
	lo, hi := ksidBytes(kr)
	filter := fmt.Sprintf(`ksid >= '\x%x' AND ksid < '\x%x'`, lo, hi)
	var total int64
	for _, t := range ts {
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			_, err := in.Conn().PgConn().CopyTo(ctx, pw, fmt.Sprintf("COPY (SELECT %s FROM %s WHERE %s) TO STDOUT", t.cols, t.name, filter))
			_ = pw.CloseWithError(err)
			errc <- err
		}()
		tag, err := out.Conn().PgConn().CopyFrom(ctx, pr, fmt.Sprintf("COPY %s (%s) FROM STDIN", t.name, t.cols))
		pr.Close()
		if werr := <-errc; werr != nil {
			return total, fmt.Errorf("%s: COPY TO: %w", t.name, werr)
		}
		if err != nil {
			return total, fmt.Errorf("%s: COPY FROM: %w", t.name, err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}

// deleteRange empties kr on db (children before parents) and vacuums, so that the move that follows
// finds the target as a fresh one.
func deleteRange(ctx context.Context, db *pgxpool.Pool, kr shardkey.KeyRange) error {
	ts, err := tables(ctx, db)
	if err != nil {
		return err
	}
	// auth.users last: the other tables refer to it.
	sort.SliceStable(ts, func(i, j int) bool { return ts[j].name == "auth.users" && ts[i].name != "auth.users" })
	lo, hi := ksidBytes(kr)
	for _, t := range ts {
		if _, err := db.Exec(ctx, "DELETE FROM "+t.name+" WHERE ksid >= $1 AND ksid < $2", lo, hi); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	_, err = db.Exec(ctx, "VACUUM ANALYZE")
	return err
}

func stepMillis(m *move.Move, step move.Step) float64 {
	for _, st := range m.Steps {
		if st.Step == step {
			return st.Millis
		}
	}
	return 0
}

// BenchmarkCopy times the move's copy step (publication, slot, subscription, initial sync of every
// table) against a raw COPY of the same rows from the same source to the same target.
func BenchmarkCopy(b *testing.B) {
	e := setup(b)
	users := 2000 * b.N
	e.seed(shardA, users)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	b.ResetTimer()
	start := time.Now()
	raw, err := rawCopy(ctx, e.db[shardA], e.db[shardB], moved)
	rawTime := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if raw != int64(users*rowsUser) {
		b.Fatalf("raw COPY copied %d rows, seeded %d", raw, users*rowsUser)
	}
	if err := deleteRange(ctx, e.db[shardB], moved); err != nil {
		b.Fatal(err)
	}

	m, err := e.runner().Start(ctx, moved, shardB)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	var copied int64
	for _, n := range m.RowsCopied {
		copied += n
	}
	if copied != raw {
		b.Fatalf("the move copied %d rows, the raw COPY %d", copied, raw)
	}
	moveTime := time.Duration(stepMillis(m, move.StepCopy) * float64(time.Millisecond))
	rawRate, moveRate := float64(raw)/rawTime.Seconds(), float64(copied)/moveTime.Seconds()
	b.ReportMetric(float64(raw), "rows")
	b.ReportMetric(rawRate, "raw_rows/s")
	b.ReportMetric(moveRate, "move_rows/s")
	b.ReportMetric(moveRate/rawRate, "move/raw")
	b.ReportMetric(stepMillis(m, move.StepCleanup), "cleanup_ms")
	b.ReportMetric(0, "ns/op") // one b.N loop's time means nothing here; the metrics above are the result
	b.Logf("%d rows: raw COPY %s (%.0f rows/s), move copy step %s (%.0f rows/s), ratio %.2f; steps: %s",
		raw, rawTime.Round(time.Millisecond), rawRate, moveTime.Round(time.Millisecond), moveRate, moveRate/rawRate, steps(m))
}

func steps(m *move.Move) string {
	s := ""
	for _, st := range m.Steps {
		s += fmt.Sprintf("%s %.0f ms; ", st.Step, st.Millis)
	}
	return s
}

// write is one acknowledged or failed write of a writer.
type write struct {
	start, end time.Time
	err        error
}

// BenchmarkCutoverPause moves the keyrange back and forth between the two shards while writers
// insert into it through shardpool.WriteShard (as API nodes do, with the nodes' 2 s hold), and
// reports the write pause per cutover: the move record's (freeze written to flip written) and the
// slowest write that overlapped the cutover, as the writers saw it; p50 and p99 over the cutovers.
func BenchmarkCutoverPause(b *testing.B) {
	e := setup(b)
	e.seed(shardA, 200)
	cutovers := max(16, b.N)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	const writers = 4
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var writes []write
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := shardkey.KeyspaceID(moved.Start + rand.Uint64N(moved.End-moved.Start))
				id := make([]byte, 20)
				for i := range id {
					id[i] = byte(rand.UintN(256))
				}
				w := write{start: time.Now()}
				w.err = func() error {
					wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					r, err := e.mgr.WriteShard(wctx, k, region, 2*time.Second)
					if err != nil {
						return err
					}
					_, err = r.Pool.Exec(wctx, `INSERT INTO core.audit_log (ksid, id, action, target) VALUES ($1, $2, 'bench.write', $3)`, k.Bytes(), id, r.Shard)
					return err
				}()
				w.end = time.Now()
				mu.Lock()
				writes = append(writes, w)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	e.teardown = append(e.teardown, func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	r := e.runner()
	type cut struct {
		from, to            time.Time
		pause               float64
		attempts            int
		freeze, drain, flip float64
	}
	var cuts []cut
	b.ResetTimer()
	for i := range cutovers {
		to := shardB
		if i%2 == 1 {
			to = shardA
		}
		m, err := r.Start(ctx, moved, to)
		if err != nil {
			b.Fatalf("move %d to %s: %v", i, to, err)
		}
		c := cut{pause: m.WritePauseMillis, attempts: m.FreezeAttempts,
			freeze: stepMillis(m, move.StepFreeze), drain: stepMillis(m, move.StepDrain), flip: stepMillis(m, move.StepFlip)}
		for _, st := range m.Steps {
			switch st.Step {
			case move.StepFreeze:
				c.from = st.Started
			case move.StepFlip:
				c.to = st.Finished
			}
		}
		cuts = append(cuts, c)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()

	var failed int
	var firstErr error
	var recPause, seen, inWin, outWin []float64
	for _, c := range cuts {
		recPause = append(recPause, c.pause)
		var worst time.Duration
		for _, w := range writes {
			if w.start.Before(c.to) && w.end.After(c.from) {
				worst = max(worst, w.end.Sub(w.start))
			}
		}
		seen = append(seen, ms(worst))
	}
	for _, w := range writes {
		if w.err != nil {
			failed++
			firstErr = firstOf(firstErr, w.err)
			continue
		}
		in := slices.ContainsFunc(cuts, func(c cut) bool { return w.start.Before(c.to) && w.end.After(c.from) })
		if in {
			inWin = append(inWin, ms(w.end.Sub(w.start)))
		} else {
			outWin = append(outWin, ms(w.end.Sub(w.start)))
		}
	}
	if failed > 0 {
		b.Errorf("%d of %d writes failed; first: %v", failed, len(writes), firstErr)
	}
	b.ReportMetric(float64(len(cuts)), "cutovers")
	b.ReportMetric(pct(recPause, 0.5), "pause-p50-ms")
	b.ReportMetric(pct(recPause, 0.99), "pause-p99-ms")
	b.ReportMetric(pct(seen, 0.5), "seen-p50-ms")
	b.ReportMetric(pct(seen, 0.99), "seen-p99-ms")
	b.ReportMetric(float64(failed), "failed")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d cutovers, %d writes (%d failed): record pause p50 %.1f ms p99 %.1f ms; slowest write per cutover p50 %.1f ms p99 %.1f ms; writes in a cutover: %d, p50 %.1f ms p99 %.1f ms; outside: %d, p50 %.1f ms p99 %.1f ms",
		len(cuts), len(writes), failed, pct(recPause, 0.5), pct(recPause, 0.99), pct(seen, 0.5), pct(seen, 0.99),
		len(inWin), pct(inWin, 0.5), pct(inWin, 0.99), len(outWin), pct(outWin, 0.5), pct(outWin, 0.99))
	var freeze, drain, flip []float64
	attempts := 0
	for _, c := range cuts {
		freeze, drain, flip = append(freeze, c.freeze), append(drain, c.drain), append(flip, c.flip)
		attempts += c.attempts
	}
	b.ReportMetric(pct(freeze, 0.5), "freeze-p50-ms")
	b.ReportMetric(pct(drain, 0.5), "drain-p50-ms")
	b.ReportMetric(pct(flip, 0.5), "flip-p50-ms")
	b.Logf("cutover steps p50 (p99): freeze %.1f (%.1f) ms, drain %.1f (%.1f) ms, flip %.1f (%.1f) ms; %d freeze attempts for %d cutovers",
		pct(freeze, 0.5), pct(freeze, 0.99), pct(drain, 0.5), pct(drain, 0.99), pct(flip, 0.5), pct(flip, 0.99), attempts, len(cuts))
}

func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the q quantile of v (nearest rank).
func pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
