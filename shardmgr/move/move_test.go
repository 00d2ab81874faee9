package move_test

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The test moves "2040-2080", half of us-east-1's "20-2080", to us-east-2 (same PostgreSQL
// cluster, as in the local deployment); "20-2040" stays on us-east-1 and must be left alone.
var (
	moved  = shardkey.MustParseKeyRange("2040-2080")
	stays  = shardkey.MustParseKeyRange("20-2040")
	source = "us-east-1"
	target = "us-east-2"
	region = "us-east"
)

// env is one test's deployment: the fixture, pools to the two shards, a shard manager that follows
// the topology as an API node does (the fleet the cutover waits for), and a runner config.
type env struct {
	t        *testing.T
	f        *fixture.Fixture
	src, dst *pgxpool.Pool
	mgr      *shardpool.Manager
	prefix   string
	lockKey  string
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
		case <-time.After(time.Millisecond):
		}
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	f := fixture.New(t, fixture.Options{Shards: true, Consul: true, MaxConns: 8})
	ctx := context.Background()
	// Split us-east-1's keyrange so that the move takes half of it.
	if _, err := f.Store.Modify(ctx, func(topo *topology.Topology) error {
		for i, a := range topo.KeyRanges {
			if a.Shard == source {
				topo.KeyRanges[i].Range = stays
				topo.KeyRanges = append(topo.KeyRanges, topology.Assignment{Range: moved, Shard: source, State: topology.Serving})
				return nil
			}
		}
		return errors.New("no keyrange on " + source)
	}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, f: f, prefix: "meridian-test/" + f.Prefix + "/moves/", lockKey: "meridian-test/" + f.Prefix + "/lock"}
	var err error
	if e.src, err = pgxpool.New(ctx, f.DSN[source]); err != nil {
		t.Fatal(err)
	}
	if e.dst, err = pgxpool.New(ctx, f.DSN[target]); err != nil {
		t.Fatal(err)
	}
	w, err := topostore.NewWatcher(f.Consul, topostore.WatcherConfig{Key: f.Key, MinInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if e.mgr, err = shardpool.New(shardpool.DefaultConfig(), nil); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, unsub := w.Subscribe(4)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = w.Run(wctx) }()
	go func() { defer wg.Done(); e.mgr.Follow(wctx, ch) }()
	t.Cleanup(func() {
		// A failed test may leave replication objects, which would keep testenv from dropping
		// the databases: subscriptions first (without reaching the publisher), then slots.
		ctx := context.Background()
		rows, _ := e.dst.Query(ctx, "SELECT subname FROM pg_subscription WHERE subname LIKE 'meridian_move_%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
		subs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, s := range subs {
			_, _ = e.dst.Exec(ctx, "ALTER SUBSCRIPTION "+s+" DISABLE")
			_, _ = e.dst.Exec(ctx, "ALTER SUBSCRIPTION "+s+" SET (slot_name = NONE)")
			_, _ = e.dst.Exec(ctx, "DROP SUBSCRIPTION "+s)
		}
		time.Sleep(100 * time.Millisecond)
		_, _ = e.src.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL")
		time.Sleep(100 * time.Millisecond)
		_, _ = e.src.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
		cancel()
		unsub()
		wg.Wait()
		e.mgr.Close()
		e.src.Close()
		e.dst.Close()
		_, _ = f.Consul.KV().DeleteTree(e.prefix, nil)
	})
	<-w.Ready()
	return e
}

func (e *env) config() move.Config {
	cfg := move.DefaultConfig()
	cfg.Consul = e.f.Consul
	cfg.Topology = e.f.Store
	cfg.Fleet = managerFleet{e.mgr}
	cfg.Prefix = e.prefix
	cfg.LockKey = e.lockKey
	cfg.LockDelay = time.Millisecond
	cfg.Poll = 50 * time.Millisecond
	cfg.FreezeBackoff = 100 * time.Millisecond
	cfg.DeleteBatch = 100 // several batches even with a small data set
	cfg.DeletePause = time.Millisecond
	cfg.Logger = testLogger(e.t)
	return cfg
}

func (e *env) runner(cfg move.Config) *move.Runner {
	e.t.Helper()
	r, err := move.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func randomID() []byte {
	b := make([]byte, 20)
	_, _ = crand.Read(b)
	return b
}

// ksidIn returns a random ksid of kr (whose end is bounded).
func ksidIn(kr shardkey.KeyRange) shardkey.KeyspaceID {
	return shardkey.KeyspaceID(kr.Start + rand.Uint64N(kr.End-kr.Start))
}

// seed writes users with a profile and two jobs each, half of them in each keyrange of us-east-1.
func (e *env) seed(users int) {
	e.t.Helper()
	ctx := context.Background()
	for i := range users {
		kr := moved
		if i%2 == 1 {
			kr = stays
		}
		k := ksidIn(kr).Bytes()
		id := randomID()
		email := fmt.Sprintf("u%d-%x@example.com", i, id[:4])
		if _, err := e.src.Exec(ctx, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, $3, $3, 'User', 'client', '20')`, k, id, email); err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.src.Exec(ctx, `INSERT INTO core.profiles (ksid, user_id, headline, skills) VALUES ($1, $2, 'hi', '{go,sql}')`, k, id); err != nil {
			e.t.Fatal(err)
		}
		for j := range 2 {
			if _, err := e.src.Exec(ctx, `INSERT INTO core.jobs (ksid, id, owner_id, title, description) VALUES ($1, $2, $3, $4, 'something to do')`, k, randomID(), id, fmt.Sprintf("job %d", j)); err != nil {
				e.t.Fatal(err)
			}
		}
		// A pending outbox message and an applied inbox key: both follow the owner's ksid.
		if _, err := e.src.Exec(ctx, `INSERT INTO core.outbox (ksid, destination, target_ksid, kind, idempotency_key, payload)
			VALUES ($1, 'eu-west', $2, 'test.note', $3, '{"n": 1}')`, k, ksidIn(stays).Bytes(), fmt.Sprintf("note-%d", i)); err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.src.Exec(ctx, `INSERT INTO core.inbox (ksid, idempotency_key, kind, source) VALUES ($1, $2, 'test.note', 'eu-west')`,
			k, fmt.Sprintf("note-%d", i)); err != nil {
			e.t.Fatal(err)
		}
	}
}

// counts returns the rows of kr per table on db (tables with rows only).
func counts(t *testing.T, db *pgxpool.Pool, kr shardkey.KeyRange) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	lo := binary.BigEndian.AppendUint64(nil, kr.Start)
	hi := binary.BigEndian.AppendUint64(nil, kr.End)
	for _, tab := range []string{"auth.users", "auth.credentials", "auth.refresh_token_families", "auth.refresh_tokens", "auth.api_keys",
		"auth.oauth_identities", "auth.email_claims", "auth.email_verifications", "core.profiles", "core.settings", "core.jobs", "core.reviews", "core.audit_log", "core.outbox", "core.inbox", "ai.embeddings"} {
		var n int64
		if err := db.QueryRow(context.Background(), "SELECT count(*) FROM "+tab+" WHERE ksid >= $1 AND ksid < $2", lo, hi).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			out[tab] = n
		}
	}
	return out
}

func (e *env) assignment(kr shardkey.KeyRange) topology.Assignment {
	e.t.Helper()
	topo, _, err := e.f.Store.Load(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, a := range topo.KeyRanges {
		if a.Range == kr {
			return a
		}
	}
	e.t.Fatalf("no assignment %s", kr)
	return topology.Assignment{}
}

// noLeftovers fails when a replication object of a move is left on either shard.
func (e *env) noLeftovers() {
	e.t.Helper()
	for name, db := range map[string]*pgxpool.Pool{source: e.src, target: e.dst} {
		left, err := move.Leftovers(context.Background(), db)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(left) > 0 {
			e.t.Errorf("%s: replication objects left behind: %v", name, left)
		}
	}
}

// writers write audit rows to random ksids of the moved keyrange, routed as an API node routes them:
// WriteShard with a hold, then the insert on the shard it named.
type writers struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  [][2][]byte // ksid, id
	errs   []error
	maxLat atomic.Int64
}

func (e *env) startWriters(n int) *writers {
	w := &writers{stop: make(chan struct{})}
	for range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				k := ksidIn(moved)
				id := randomID()
				start := time.Now()
				err := func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					r, err := e.mgr.WriteShard(ctx, k, region, 2*time.Second)
					if err != nil {
						return err
					}
					_, err = r.Pool.Exec(ctx, `INSERT INTO core.audit_log (ksid, id, action, target) VALUES ($1, $2, 'test.write', $3)`, k.Bytes(), id, r.Shard)
					return err
				}()
				lat := time.Since(start)
				if int64(lat) > w.maxLat.Load() {
					w.maxLat.Store(int64(lat))
				}
				w.mu.Lock()
				if err != nil {
					w.errs = append(w.errs, err)
				} else {
					w.acked = append(w.acked, [2][]byte{k.Bytes(), id})
				}
				w.mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			}
		}()
	}
	return w
}

func (w *writers) halt() {
	close(w.stop)
	w.wg.Wait()
}

func TestMoveUnderConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	e.seed(200)
	before := counts(t, e.src, moved)
	stayBefore := counts(t, e.src, stays)
	w := e.startWriters(4)
	time.Sleep(200 * time.Millisecond)

	cfg := e.config()
	var progress []move.Progress
	var pmu sync.Mutex
	cfg.Progress = func(p move.Progress) { pmu.Lock(); progress = append(progress, p); pmu.Unlock() }
	r := e.runner(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := r.Start(ctx, moved, target)
	time.Sleep(200 * time.Millisecond) // writes after the flip too
	w.halt()
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	if m.Status != move.Done || m.Step != move.StepDone {
		t.Fatalf("move ended %s at %s", m.Status, m.Step)
	}
	if len(w.errs) > 0 {
		t.Errorf("%d writes failed, first: %v", len(w.errs), w.errs[0])
	}
	t.Logf("move %s: write pause %.1f ms, %d freeze attempt(s); %d writes acknowledged, slowest %s", m.ID, m.WritePauseMillis, m.FreezeAttempts, len(w.acked), time.Duration(w.maxLat.Load()))
	for _, st := range m.Steps {
		t.Logf("  %-8s %8.1f ms", st.Step, st.Millis)
	}

	if a := e.assignment(moved); a.Shard != target || a.State != topology.Serving {
		t.Fatalf("after the move: %+v", a)
	}
	// Every acknowledged write is on the target exactly once, and nothing of the keyrange is left on
	// the source.
	for _, kv := range w.acked {
		var n int
		if err := e.dst.QueryRow(ctx, "SELECT count(*) FROM core.audit_log WHERE ksid = $1 AND id = $2", kv[0], kv[1]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("acknowledged write %x/%x is on the target %d times", kv[0], kv[1], n)
		}
	}
	if left := counts(t, e.src, moved); len(left) > 0 {
		t.Errorf("rows of %s left on the source: %v", moved, left)
	}
	got := counts(t, e.dst, moved)
	for tab, n := range before {
		if got[tab] < n {
			t.Errorf("%s: %d rows on the target, %d were on the source", tab, got[tab], n)
		}
	}
	if got["core.audit_log"] != int64(len(w.acked)) {
		t.Errorf("audit_log on the target: %d rows, %d writes acknowledged", got["core.audit_log"], len(w.acked))
	}
	if stay := counts(t, e.src, stays); fmt.Sprint(stay) != fmt.Sprint(stayBefore) {
		t.Errorf("the keyrange that stays changed: %v, was %v", stay, stayBefore)
	}
	e.noLeftovers()
	var sawCopy bool
	for _, p := range progress {
		if p.Step == move.StepCopy && p.RowsTotal > 0 {
			sawCopy = true
		}
	}
	if !sawCopy {
		t.Error("no copy progress reported")
	}
	// The record lists the move as done with every step's timing.
	all, err := r.List(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != m.ID || len(all[0].Steps) < len(move.Steps) {
		t.Errorf("List(all) = %+v", all)
	}
	if running, _ := r.List(ctx, false); len(running) != 0 {
		t.Errorf("List(running) = %v after the move", running)
	}
}

// gatedFleet is managerFleet for the freeze (the first wait) and holds every later wait for a
// newer version (the flip's) until open is closed: a node slow to apply the flip.
type gatedFleet struct {
	managerFleet
	mu     sync.Mutex
	freeze uint64
	gated  chan uint64 // receives the version of a held wait
	open   chan struct{}
}

func (f *gatedFleet) WaitApplied(ctx context.Context, dc, svc string, version uint64) error {
	f.mu.Lock()
	if f.freeze == 0 {
		f.freeze = version
	}
	later := version > f.freeze
	f.mu.Unlock()
	if later {
		select {
		case f.gated <- version:
		default:
		}
		select {
		case <-f.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.managerFleet.WaitApplied(ctx, dc, svc, version)
}

// The source's rows of the keyrange stay until every node holds the flip and no transaction open
// on the source when they all did is still open: a node slow to apply the flip, or a read routed to
// the source before the freeze and still running, reads rows that are still there.
func TestCleanupWaitsForTheNodesAndOpenReads(t *testing.T) {
	e := newEnv(t)
	e.seed(40)
	before := counts(t, e.src, moved)
	cfg := e.config()
	fl := &gatedFleet{managerFleet: managerFleet{e.mgr}, gated: make(chan uint64, 1), open: make(chan struct{})}
	cfg.Fleet = fl
	r := e.runner(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type result struct {
		m   *move.Move
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := r.Start(ctx, moved, target)
		done <- result{m, err}
	}()
	select {
	case v := <-fl.gated:
		t.Logf("cleanup waits for the nodes to hold version %d (the freeze was %d)", v, fl.freeze)
	case res := <-done:
		t.Fatalf("the move ended without waiting for the nodes to apply the flip: %+v, %v", res.m, res.err)
	}
	if a := e.assignment(moved); a.Shard != target {
		t.Fatalf("the cleanup's wait came before the flip: %+v", a)
	}
	// A read still running on the source: a transaction opened there now.
	tx, err := e.src.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := binary.BigEndian.AppendUint64(nil, moved.Start), binary.BigEndian.AppendUint64(nil, moved.End)
	var n int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM core.jobs WHERE ksid >= $1 AND ksid < $2", lo, hi).Scan(&n); err != nil || n != before["core.jobs"] {
		t.Fatalf("jobs on the source while a node lags: %d, %v; want %d", n, err, before["core.jobs"])
	}
	time.Sleep(200 * time.Millisecond)
	if got := counts(t, e.src, moved); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("rows deleted from the source while a node had not applied the flip: %v, were %v", got, before)
	}
	close(fl.open)
	time.Sleep(300 * time.Millisecond)
	if got := counts(t, e.src, moved); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("rows deleted from the source while a read was open there: %v, were %v", got, before)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.m.Status != move.Done {
		t.Fatalf("move: %+v, %v", res.m, res.err)
	}
	if left := counts(t, e.src, moved); len(left) > 0 {
		t.Errorf("rows of %s left on the source: %v", moved, left)
	}
	e.noLeftovers()
}

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	e.seed(10)
	ctx := context.Background()
	r := e.runner(e.config())
	topoBefore, idx, err := e.f.Store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		kr     string
		target string
		want   string
	}{
		{"other region", "2040-2080", "eu-west-1", "region"},
		{"same shard", "2040-2080", source, "already on"},
		{"unknown shard", "2040-2080", "nowhere-9", "no shard"},
		{"part of an assignment", "2040-2060", target, "not one assignment"},
		{"across assignments", "20-2080", target, "not one assignment"},
		{"nobody's", "a0-b0", target, "no shard owns"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := r.Start(ctx, shardkey.MustParseKeyRange(c.kr), c.target)
			if !errors.Is(err, move.ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Start = %v, want a refusal saying %q", err, c.want)
			}
		})
	}

	// The lock held (a migration running): refused with the holder named.
	l, err := shardlock.Acquire(ctx, e.f.Consul, e.lockKey, "migrate up")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Start(ctx, moved, target)
	if !errors.Is(err, shardlock.ErrHeld) || !strings.Contains(err.Error(), "migrate up") {
		t.Errorf("Start while the lock is held = %v", err)
	}
	_ = l.Release(ctx)

	// Schemas that differ: the target one migration behind.
	if _, err := e.dst.Exec(ctx, "DELETE FROM public.meridian_schema_migrations WHERE version_id = (SELECT max(version_id) FROM public.meridian_schema_migrations)"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(ctx, moved, target); !errors.Is(err, move.ErrRefused) || !strings.Contains(err.Error(), "schemas differ") {
		t.Errorf("Start with schemas that differ = %v", err)
	}
	if _, err := e.dst.Exec(ctx, "INSERT INTO public.meridian_schema_migrations (version_id, is_applied) SELECT max(version_id)+1, true FROM public.meridian_schema_migrations"); err != nil {
		t.Fatal(err)
	}

	// Rows of the keyrange already on the target.
	if _, err := e.dst.Exec(ctx, `INSERT INTO core.audit_log (ksid, id, action) VALUES ($1, $2, 'test.stray')`, ksidIn(moved).Bytes(), randomID()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(ctx, moved, target); !errors.Is(err, move.ErrRefused) || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("Start with rows on the target = %v", err)
	}

	// Nothing changed: topology, records, replication objects.
	after, idx2, err := e.f.Store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx2 != idx || after.Version != topoBefore.Version {
		t.Errorf("the topology changed: version %d → %d", topoBefore.Version, after.Version)
	}
	if ms, _ := r.List(ctx, true); len(ms) != 0 {
		t.Errorf("refusals left records: %v", ms)
	}
	e.noLeftovers()
}

// TestFaultPoints kills the runner right after each step, as a crash would (the lock abandoned,
// nothing cleaned up), then resumes the move or aborts it from a new runner, and checks what
// survived: the topology, the rows of both keyranges, and no replication object left.
func TestFaultPoints(t *testing.T) {
	for _, point := range move.FaultPoints() {
		for _, then := range []string{"resume", "abort"} {
			t.Run(string(point)+"/"+then, func(t *testing.T) {
				e := newEnv(t)
				e.seed(20)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				before, stayBefore := counts(t, e.src, moved), counts(t, e.src, stays)

				cfg := e.config()
				cfg.Fault = func(s move.Step) bool { return s == point }
				m, err := e.runner(cfg).Start(ctx, moved, target)
				if !errors.Is(err, move.ErrKilled) {
					t.Fatalf("Start with a fault after %s = %v, want ErrKilled", point, err)
				}
				a := e.assignment(moved)
				t.Logf("killed after %s: keyrange %s on %s", point, a.State, a.Shard)

				r := e.runner(e.config())
				flipped := !slices.Contains([]move.Step{move.StepPrepare, move.StepCopy, move.StepCatchup, move.StepVerify, move.StepFreeze, move.StepDrain}, point)
				switch then {
				case "resume":
					done, err := r.Resume(ctx, m.ID)
					if err != nil {
						t.Fatalf("Resume: %v", err)
					}
					if done.Status != move.Done {
						t.Fatalf("resumed move is %s", done.Status)
					}
					if a := e.assignment(moved); a.Shard != target || a.State != topology.Serving {
						t.Fatalf("after resume: %+v", a)
					}
					if left := counts(t, e.src, moved); len(left) > 0 {
						t.Errorf("rows left on the source: %v", left)
					}
					if got := counts(t, e.dst, moved); fmt.Sprint(got) != fmt.Sprint(before) {
						t.Errorf("target has %v, the source had %v", got, before)
					}
				case "abort":
					_, err := r.Abort(ctx, m.ID)
					if flipped {
						if !errors.Is(err, move.ErrPastFlip) {
							t.Fatalf("Abort after the flip = %v, want ErrPastFlip", err)
						}
						if _, err := r.Resume(ctx, m.ID); err != nil {
							t.Fatalf("Resume after the refused abort: %v", err)
						}
						if a := e.assignment(moved); a.Shard != target {
							t.Fatalf("after resume: %+v", a)
						}
						break
					}
					if err != nil {
						t.Fatalf("Abort: %v", err)
					}
					if a := e.assignment(moved); a.Shard != source || a.State != topology.Serving {
						t.Fatalf("after abort: %+v", a)
					}
					if got := counts(t, e.src, moved); fmt.Sprint(got) != fmt.Sprint(before) {
						t.Errorf("source has %v after the abort, had %v", got, before)
					}
					if left := counts(t, e.dst, moved); len(left) > 0 {
						t.Errorf("rows left on the target: %v", left)
					}
					got, err := r.Get(ctx, m.ID)
					if err != nil || got.Status != move.Aborted {
						t.Errorf("record after abort: %+v, %v", got, err)
					}
				}
				if stay := counts(t, e.src, stays); fmt.Sprint(stay) != fmt.Sprint(stayBefore) {
					t.Errorf("the keyrange that stays changed: %v, was %v", stay, stayBefore)
				}
				e.noLeftovers()
			})
		}
	}
}

func TestFreezeOverrunRollsBack(t *testing.T) {
	e := newEnv(t)
	e.seed(10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := e.startWriters(2)
	cfg := e.config()
	cfg.Fleet = stuckFleet{}
	cfg.MaxPause = 200 * time.Millisecond
	cfg.FreezeAttempts = 2
	m, err := e.runner(cfg).Start(ctx, moved, target)
	time.Sleep(100 * time.Millisecond)
	w.halt()
	var me *move.Error
	if !errors.Is(err, move.ErrFreezeBudget) || !errors.As(err, &me) || me.Flipped {
		t.Fatalf("Start with nodes that never apply = %v, want a resumable ErrFreezeBudget", err)
	}
	if len(w.errs) > 0 {
		t.Errorf("%d writes failed during the rolled-back freezes, first: %v", len(w.errs), w.errs[0])
	}
	if a := e.assignment(moved); a.Shard != source || a.State != topology.Moving {
		t.Fatalf("after the rolled-back cutovers: %+v, want moving on the source", a)
	}
	got, _ := e.runner(e.config()).Get(ctx, m.ID)
	if got.Status != move.Failed || got.FreezeAttempts != 2 {
		t.Errorf("record: status %s, %d freeze attempts", got.Status, got.FreezeAttempts)
	}
	// With the fleet answering, the resume finishes it.
	if _, err := e.runner(e.config()).Resume(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if a := e.assignment(moved); a.Shard != target {
		t.Fatalf("after resume: %+v", a)
	}
	e.noLeftovers()
}

// A row the target refuses (here a user whose email another user of the target already has) makes the
// initial copy fail over and over on the target; the move stops with ErrCopyFailed instead of waiting
// forever, nothing flips, and once the cause is gone, resume finishes it.
func TestCopyFailureStopsTheMove(t *testing.T) {
	e := newEnv(t)
	e.seed(6)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var email string
	if err := e.src.QueryRow(ctx, `SELECT email FROM auth.users WHERE ksid >= $1 AND ksid < $2 LIMIT 1`,
		shardkey.KeyspaceID(moved.Start).Bytes(), shardkey.KeyspaceID(moved.End).Bytes()).Scan(&email); err != nil {
		t.Fatal(err)
	}
	// On the target, outside the moved keyrange, a user with the same email.
	clash := shardkey.KeyspaceID(shardkey.MustParseKeyRange("2080-21").Start + 1).Bytes()
	if _, err := e.dst.Exec(ctx, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, $3, $3, 'Clash', 'client', '20')`, clash, randomID(), email); err != nil {
		t.Fatal(err)
	}
	m, err := e.runner(e.config()).Start(ctx, moved, target)
	var me *move.Error
	if !errors.Is(err, move.ErrCopyFailed) || !errors.As(err, &me) || me.Flipped {
		t.Fatalf("Start with a row the target refuses = %v, want a resumable ErrCopyFailed", err)
	}
	if a := e.assignment(moved); a.Shard != source {
		t.Fatalf("after the failed copy: %+v, want the source to own it", a)
	}
	if _, err := e.dst.Exec(ctx, `DELETE FROM auth.users WHERE ksid = $1`, clash); err != nil {
		t.Fatal(err)
	}
	if _, err := e.runner(e.config()).Resume(ctx, m.ID); err != nil {
		t.Fatalf("resume once the clash is gone: %v", err)
	}
	if a := e.assignment(moved); a.Shard != target || a.State != topology.Serving {
		t.Fatalf("after resume: %+v", a)
	}
	e.noLeftovers()
}

// stuckFleet is a region whose nodes never apply anything.
type stuckFleet struct{}

func (stuckFleet) WaitApplied(ctx context.Context, _, _ string, _ uint64) error {
	<-ctx.Done()
	return ctx.Err()
}

// testLogger logs through t, so a failing test shows what the runner did.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// hammer rewrites one profile of the moved keyrange as fast as it can, routed as a node routes it
// (WriteShard with a hold), and remembers the last headline acknowledged.
type hammer struct {
	stop  chan struct{}
	done  chan struct{}
	ksid  []byte
	last  string
	n     int
	errs  []error
	maxMs float64
}

func (e *env) startHammer(t *testing.T) *hammer {
	t.Helper()
	ctx := context.Background()
	lo, hi := shardkey.KeyspaceID(moved.Start).Bytes(), shardkey.KeyspaceID(moved.End).Bytes()
	h := &hammer{stop: make(chan struct{}), done: make(chan struct{})}
	if err := e.src.QueryRow(ctx, `SELECT ksid FROM core.profiles WHERE ksid >= $1 AND ksid < $2 ORDER BY ksid LIMIT 1`, lo, hi).Scan(&h.ksid); err != nil {
		t.Fatal(err)
	}
	k := shardkey.KeyspaceID(binary.BigEndian.Uint64(h.ksid))
	go func() {
		defer close(h.done)
		for i := 0; ; i++ {
			select {
			case <-h.stop:
				return
			default:
			}
			headline := fmt.Sprintf("hot %d", i)
			start := time.Now()
			err := func() error {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				r, err := e.mgr.WriteShard(ctx, k, region, 2*time.Second)
				if err != nil {
					return err
				}
				_, err = r.Pool.Exec(ctx, `UPDATE core.profiles SET headline = $2 WHERE ksid = $1`, h.ksid, headline)
				return err
			}()
			h.maxMs = max(h.maxMs, float64(time.Since(start).Microseconds())/1000)
			if err != nil {
				h.errs = append(h.errs, err)
				continue
			}
			h.last, h.n = headline, h.n+1
		}
	}()
	return h
}

func (h *hammer) halt() { close(h.stop); <-h.done }

// A row rewritten faster than verify can recheck it differs in every recheck; verify leaves it to
// the cutover, which rechecks it with the writes held and drained, where it stands still: the move
// finishes, and the row on the target is the last one acknowledged.
func TestHotRowSettledInTheCutover(t *testing.T) {
	e := newEnv(t)
	e.seed(20)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h := e.startHammer(t)
	time.Sleep(100 * time.Millisecond)
	m, err := e.runner(e.config()).Start(ctx, moved, target)
	time.Sleep(100 * time.Millisecond) // rewrites at the target too
	h.halt()
	if err != nil {
		t.Fatalf("move with a hot row: %v", err)
	}
	if len(h.errs) > 0 {
		t.Errorf("%d of the hot row's writes failed, first: %v", len(h.errs), h.errs[0])
	}
	var got string
	if err := e.dst.QueryRow(ctx, `SELECT headline FROM core.profiles WHERE ksid = $1`, h.ksid).Scan(&got); err != nil || got != h.last {
		t.Fatalf("hot row on the target: %q, %v; the last acknowledged is %q", got, err, h.last)
	}
	t.Logf("%d rewrites of the hot row (slowest %.1f ms); %d rows left to the cutover %v; write pause %.1f ms",
		h.n, h.maxMs, len(m.Unsettled), m.Unsettled, m.WritePauseMillis)
	if len(m.Unsettled) == 0 {
		t.Log("the hot row happened to compare equal in a recheck: the cutover's recheck was not exercised in this run")
	}
	if left := counts(t, e.src, moved); len(left) > 0 {
		t.Errorf("rows left on the source: %v", left)
	}
	e.noLeftovers()
}

// A difference that stands still (a row changed on the target behind replication's back) is not
// settled by the cutover's recheck: the freeze is rolled back and the move fails before the flip,
// with the keyrange serving from the source and no write failed.
func TestDifferenceInTheCutoverRollsBack(t *testing.T) {
	e := newEnv(t)
	e.seed(20)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := e.startWriters(2)
	cfg := e.config()
	lo, hi := shardkey.KeyspaceID(moved.Start).Bytes(), shardkey.KeyspaceID(moved.End).Bytes()
	var corrupted bool
	cfg.Progress = func(p move.Progress) {
		if p.Step == move.StepVerify && !corrupted {
			corrupted = true
			if _, err := e.dst.Exec(ctx, `UPDATE core.profiles SET headline = 'not the source''s' WHERE ksid = (SELECT ksid FROM core.profiles WHERE ksid >= $1 AND ksid < $2 ORDER BY ksid LIMIT 1)`, lo, hi); err != nil {
				t.Error(err)
			}
		}
	}
	m, err := e.runner(cfg).Start(ctx, moved, target)
	w.halt()
	var me *move.Error
	if !errors.Is(err, move.ErrDiffer) || !errors.As(err, &me) || me.Flipped || !strings.Contains(err.Error(), "held") {
		t.Fatalf("Start with a row changed on the target = %v, want a resumable ErrDiffer from the cutover's recheck", err)
	}
	if len(w.errs) > 0 {
		t.Errorf("%d writes failed, first: %v", len(w.errs), w.errs[0])
	}
	if a := e.assignment(moved); a.Shard != source || a.State != topology.Moving {
		t.Fatalf("after the failed cutover: %+v, want moving on the source", a)
	}
	got, _ := e.runner(e.config()).Get(ctx, m.ID)
	if got.Status != move.Failed || got.Step != move.StepCatchup || len(got.Unsettled) != 1 || got.FreezeAttempts != 1 {
		t.Errorf("record: status %s after step %s, unsettled %v, %d freeze attempts", got.Status, got.Step, got.Unsettled, got.FreezeAttempts)
	}
	if _, err := e.runner(e.config()).Abort(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if a := e.assignment(moved); a.Shard != source || a.State != topology.Serving {
		t.Fatalf("after abort: %+v", a)
	}
	e.noLeftovers()
}
