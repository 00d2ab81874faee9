package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/cli"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// The example topology gives us-east-1 "20-2080" and us-east-2 "2080-21". The test splits
// us-east-1's keyrange at 2040 with the shardmgr CLI, then moves "2040-2080" to us-east-2 with
// shardmgr/move, both while clients write and read through the routers.
var (
	e2eWhole  = shardkey.MustParseKeyRange("20-2080")
	e2eMoved  = shardkey.MustParseKeyRange("2040-2080")
	e2eSource = "us-east-1"
	e2eTarget = "us-east-2"
)

// sample is one client request: what it was, whether its user is in the moved keyrange, when it
// ran and how it ended.
type sample struct {
	write, moved bool
	start, end   time.Time
	status       int
	err          error
	what         string
}

// loadUser is a client homed in us-east, with what its acknowledged writes wrote.
type loadUser struct {
	reg   cluster.Registered
	ksid  shardkey.KeyspaceID
	moved bool
	// jobs: every acknowledged job; headline: the last acknowledged profile headline (one goroutine
	// per user writes, so the last acknowledged PUT is the profile's final state).
	jobs     []shardkey.ID
	headline string
}

// moveLoad runs one goroutine per user until stop: POST a job, PUT the profile, GET the profile,
// GET the last job, through the routers in turn.
type moveLoad struct {
	routers []string
	client  *http.Client
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []sample
}

func (l *moveLoad) request(method, url, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func (l *moveLoad) run(u *loadUser, pace time.Duration) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			base := l.routers[i%len(l.routers)]
			do := func(write bool, what, method, path string, body any, ok func([]byte) error) {
				s := sample{write: write, moved: u.moved, what: what, start: time.Now()}
				s.status, _, s.err = func() (int, []byte, error) {
					st, data, err := l.request(method, base+path, u.reg.AccessToken, body)
					if err == nil && st/100 == 2 && ok != nil {
						err = ok(data)
					}
					return st, data, err
				}()
				s.end = time.Now()
				if s.err == nil && s.status/100 != 2 {
					s.err = fmt.Errorf("%s %s: %d", method, path, s.status)
				}
				l.mu.Lock()
				l.samples = append(l.samples, s)
				l.mu.Unlock()
			}
			do(true, "POST job", http.MethodPost, "/api/v1/jobs/", map[string]any{"title": fmt.Sprintf("Move job %d", i), "description": "written during a move", "skills": []string{"go"}, "currency": "USD", "remote": true}, func(b []byte) error {
				var j struct {
					ID shardkey.ID `json:"id"`
				}
				if err := json.Unmarshal(b, &j); err != nil {
					return fmt.Errorf("job answer %s: %w", b, err)
				}
				if j.ID.IsZero() {
					return fmt.Errorf("job answer without an id: %s", b)
				}
				u.jobs = append(u.jobs, j.ID)
				return nil
			})
			// The profile is one row per user, updated in place every round: rewritten faster
			// than the move's verify can recheck it, it is settled inside the cutover, with the
			// writes held (docs/moves.md).
			{
				headline := fmt.Sprintf("headline %d", i)
				do(true, "PUT profile", http.MethodPut, "/api/v1/users/profile", map[string]any{"headline": headline, "skills": []string{"go", "sql"}}, func([]byte) error {
					u.headline = headline
					return nil
				})
			}
			// Reads check what they read: the user's last acknowledged headline (a read at the
			// source after a node flipped, or at the target before, would show an older one) and
			// the job just created.
			want := u.headline
			do(false, "GET profile", http.MethodGet, "/api/v1/users/profile", nil, func(b []byte) error {
				var p struct {
					Headline string `json:"headline"`
				}
				if err := json.Unmarshal(b, &p); err != nil {
					return fmt.Errorf("profile answer %s: %w", b, err)
				}
				if want != "" && p.Headline != want {
					return fmt.Errorf("profile read %q, the last acknowledged headline is %q", p.Headline, want)
				}
				return nil
			})
			if n := len(u.jobs); n > 0 {
				id := u.jobs[n-1]
				do(false, "GET job", http.MethodGet, "/api/v1/jobs/"+id.String(), nil, func(b []byte) error {
					var j struct {
						ID shardkey.ID `json:"id"`
					}
					if err := json.Unmarshal(b, &j); err != nil {
						return fmt.Errorf("job answer %s: %w", b, err)
					}
					if j.ID != id {
						return fmt.Errorf("job read %s, want %s", b, id)
					}
					return nil
				})
			}
			time.Sleep(pace)
		}
	}()
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// A split and a move on real PostgreSQL and Consul, through two real API nodes of the region and
// two routers, under clients that write and read all along: every acknowledged write ends on the
// target exactly once, nothing of the keyrange is left on the source, and no client request fails
// (a 503 from a hold that ran out counts as a failure: the point of the hold is that none is seen).
func TestE2EMoveAndSplitUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real API nodes and routers")
	}
	c := cluster.Start(t)
	// Two nodes in the region: the cutover must wait for both to hold the freeze.
	c.StartNode(t, "us-east")
	c.WaitPassing(t, "us-east", 2)
	usRouter, _ := c.StartRouter(t, "us-east", nil)
	euRouter, _ := c.StartRouter(t, "eu-west", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cc := testenv.ConsulClient(t, c.ConsulAgent, local.RoleShardmgr)
	base := strings.TrimSuffix(c.Key, "/topology")
	lockKey, movesPrefix := base+"/lock", base+"/moves/"
	t.Cleanup(func() { _, _ = cc.KV().DeleteTree(movesPrefix, nil) })
	src, err := pgxpool.New(ctx, c.DSN[e2eSource])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	dst, err := pgxpool.New(ctx, c.DSN[e2eTarget])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dst.Close)
	// A failed move leaves its replication objects, which would keep the databases from being
	// dropped: subscriptions first (without reaching the publisher), then the slots.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx := context.Background()
		rows, _ := dst.Query(ctx, "SELECT subname FROM pg_subscription WHERE subname LIKE 'meridian_move_%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
		subs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, s := range subs {
			_, _ = dst.Exec(ctx, "ALTER SUBSCRIPTION "+s+" DISABLE")
			_, _ = dst.Exec(ctx, "ALTER SUBSCRIPTION "+s+" SET (slot_name = NONE)")
			_, _ = dst.Exec(ctx, "DROP SUBSCRIPTION "+s)
		}
		time.Sleep(100 * time.Millisecond)
		_, _ = src.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL")
		time.Sleep(100 * time.Millisecond)
		_, _ = src.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
	})

	// Users homed in us-east: a user's ksid is drawn in its region's keyspace, so register until
	// enough fall in the moved keyrange and enough outside it.
	const wantMoved, wantOther = 6, 4
	hc := cluster.Client()
	var users []*loadUser
	nMoved, nOther := 0, 0
	for i := 0; nMoved < wantMoved || nOther < wantOther; i++ {
		if i == 200 {
			t.Fatalf("200 registrations gave %d users in %s and %d outside", nMoved, e2eMoved, nOther)
		}
		reg, err := c.RegisterVerified(hc, usRouter, fmt.Sprintf("move-%d-%d@e2e.test", i, time.Now().UnixNano()), "client", "us-east")
		if err != nil {
			t.Fatal(err)
		}
		id, err := shardkey.ParseID(reg.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		u := &loadUser{reg: reg, ksid: id.KeyspaceID(), moved: e2eMoved.Contains(id.KeyspaceID())}
		switch {
		case u.moved && nMoved < wantMoved:
			nMoved++
		case !u.moved && nOther < wantOther:
			nOther++
		default:
			continue
		}
		users = append(users, u)
	}

	load := &moveLoad{routers: []string{usRouter, euRouter}, client: hc, stop: make(chan struct{})}
	for _, u := range users {
		load.run(u, 10*time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)

	// The split, with the shardmgr command line in process.
	var out bytes.Buffer
	if code := cli.Run(ctx, []string{"split", e2eWhole.String(), "--at", "2040", "--yes", "--consul", c.ConsulAddr, "--key", c.Key, "--lock-key", lockKey, "--moves-prefix", movesPrefix},
		cli.Env{Stdout: &out, Stderr: &out, Getenv: shardmgrEnv(c)}); code != cli.ExitOK {
		t.Fatalf("shardmgr split: exit %d: %s", code, out.String())
	}
	t.Logf("shardmgr split: %s", strings.TrimSpace(out.String()))
	time.Sleep(300 * time.Millisecond)

	// The move, with shardmgr/move waiting on the real nodes' published topology versions.
	store := topostore.NewStore(cc, c.Key)
	cfg := move.DefaultConfig()
	cfg.Consul, cfg.Topology = cc, store
	cfg.Prefix, cfg.LockKey = movesPrefix, lockKey
	cfg.Poll = 50 * time.Millisecond
	cfg.DeletePause = time.Millisecond
	runner, err := move.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, moveErr := runner.Start(ctx, e2eMoved, e2eTarget)
	time.Sleep(300 * time.Millisecond) // writes after the flip, at the target
	close(load.stop)
	load.wg.Wait()
	if moveErr != nil {
		t.Fatalf("move: %v", moveErr)
	}
	if m.Status != move.Done {
		t.Fatalf("move ended %s at %s: %s", m.Status, m.Step, m.Error)
	}

	// No client request failed: every read of an acknowledged row found it (the reads of a frozen
	// keyrange are held as its writes are, and the source keeps its rows until every node holds
	// the flip), and every write was acknowledged.
	var failed []sample
	for _, s := range load.samples {
		if s.err != nil {
			failed = append(failed, s)
		}
	}
	for i, s := range failed {
		if i == 5 {
			break
		}
		t.Errorf("failed request %d of %d: %s at %s (took %s): %v", i+1, len(failed), s.what, s.start.Format(time.StampMicro), s.end.Sub(s.start), s.err)
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed", len(failed), len(load.samples))
	}

	topo, _, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[shardkey.KeyRange]string{shardkey.MustParseKeyRange("20-2040"): e2eSource, e2eMoved: e2eTarget, shardkey.MustParseKeyRange("2080-21"): e2eTarget}
	for _, a := range topo.KeyRanges {
		if sh, ok := want[a.Range]; ok {
			if a.Shard != sh || a.State != topology.Serving {
				t.Errorf("after the move %s is %s on %s, want serving on %s", a.Range, a.State, a.Shard, sh)
			}
			delete(want, a.Range)
		}
	}
	if len(want) > 0 {
		t.Errorf("keyranges missing from the topology: %v", want)
	}

	// Every acknowledged write is on the shard that owns its user now, exactly once, and nowhere
	// else; the profile holds the last acknowledged headline.
	pools := map[string]*pgxpool.Pool{e2eSource: src, e2eTarget: dst}
	owner := func(k shardkey.KeyspaceID) string {
		if e2eMoved.Contains(k) || k >= shardkey.KeyspaceID(e2eMoved.End) {
			return e2eTarget
		}
		return e2eSource
	}
	acked := 0
	for _, u := range users {
		home := owner(u.ksid)
		for sh, db := range pools {
			wantN := 0
			if sh == home {
				wantN = 1
			}
			for _, j := range u.jobs {
				var n int
				if err := db.QueryRow(ctx, "SELECT count(*) FROM core.jobs WHERE ksid = $1 AND id = $2", j.KeyspaceID().Bytes(), j.Bytes()).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != wantN {
					t.Errorf("acknowledged job %s (user in %s: %v) is on %s %d times, want %d", j, e2eMoved, u.moved, sh, n, wantN)
				}
			}
			var headlines []string
			rows, err := db.Query(ctx, "SELECT headline FROM core.profiles WHERE ksid = $1", u.ksid.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if headlines, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				t.Fatal(err)
			}
			switch {
			case sh == home && (len(headlines) != 1 || headlines[0] != u.headline):
				t.Errorf("profile of %s on %s: %q, want the last acknowledged %q once", u.reg.User.ID, sh, headlines, u.headline)
			case sh != home && len(headlines) != 0:
				t.Errorf("profile of %s (homed on %s) also on %s: %q", u.reg.User.ID, home, sh, headlines)
			}
		}
		acked += len(u.jobs)
	}
	// Nothing of the moved keyrange is left on the source, in any sharded table.
	tables, err := ksidTables(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tab := range tables {
		var n int64
		if err := src.QueryRow(ctx, "SELECT count(*) FROM "+tab+" WHERE ksid >= $1 AND ksid < $2", shardkey.KeyspaceID(e2eMoved.Start).Bytes(), shardkey.KeyspaceID(e2eMoved.End).Bytes()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows of %s left in %s on the source", n, e2eMoved, tab)
		}
	}
	for sh, db := range pools {
		left, err := move.Leftovers(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("%s: replication objects left behind: %v", sh, left)
		}
	}

	// The write pause clients saw: writes of the moved keyrange that overlapped the cutover (the
	// freeze started to the flip written) against those outside it.
	var from, to time.Time
	for _, st := range m.Steps {
		switch st.Step {
		case move.StepFreeze:
			from = st.Started
		case move.StepFlip:
			to = st.Finished
		}
	}
	var in, outside []time.Duration
	for _, s := range load.samples {
		if !s.write || !s.moved {
			continue
		}
		if s.start.Before(to) && s.end.After(from) {
			in = append(in, s.end.Sub(s.start))
		} else {
			outside = append(outside, s.end.Sub(s.start))
		}
	}
	if len(in) == 0 {
		t.Errorf("no write of %s overlapped the cutover (%s to %s): the hold was not exercised", e2eMoved, from.Format(time.StampMicro), to.Format(time.StampMicro))
	}
	t.Logf("move %s: %d requests, %d jobs acknowledged, %d failed; write pause %.1f ms (%d freeze attempt(s))", m.ID, len(load.samples), acked, len(failed), m.WritePauseMillis, m.FreezeAttempts)
	for _, st := range m.Steps {
		t.Logf("  %-8s %8.1f ms", st.Step, st.Millis)
	}
	if ct := m.Cutover; ct != nil {
		t.Logf("cutover: freeze written %.1f ms, nodes held it %.1f ms, drain %.1f ms, flip written %.1f ms; the nodes applied the flip %.1f ms later",
			ct.FreezeWrite, ct.NodesHeld, ct.Drain, ct.FlipWrite, ct.NodesFlipped)
	}
	t.Logf("writes of %s in the cutover window: %d, p50 %s, p99 %s, max %s; outside: %d, p50 %s, p99 %s",
		e2eMoved, len(in), quantile(in, 0.5), quantile(in, 0.99), quantile(in, 1), len(outside), quantile(outside, 0.5), quantile(outside, 0.99))
}

// ksidTables lists the tables of db that have a ksid column (the sharded tables).
func ksidTables(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT c.table_schema || '.' || c.table_name FROM information_schema.columns c
		JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.column_name = 'ksid' AND t.table_type = 'BASE TABLE' AND c.table_schema IN ('auth', 'core', 'ai') ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// shardmgrEnv is the environment an SRE runs shardmgr with against c: the shardmgr role's token.
func shardmgrEnv(c *cluster.Cluster) func(string) string {
	return func(name string) string {
		if name == "CONSUL_HTTP_TOKEN_FILE" {
			return c.ConsulAgent.TokenFile(local.RoleShardmgr)
		}
		return ""
	}
}
