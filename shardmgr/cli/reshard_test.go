package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// reshardFixture is a fixture with its topology in Consul, every shard migrated, and a shard lock and
// moves prefix of the test's own.
func reshardFixture(t *testing.T) fixture {
	t.Helper()
	f := newFixture(t)
	base := strings.TrimSuffix(f.env["MERIDIAN_TOPOLOGY_KEY"], "/topology")
	f.env["MERIDIAN_LOCK_KEY"] = base + "/lock"
	f.env["MERIDIAN_MOVES_PREFIX"] = base + "/moves/"
	if r := shardmgr(t, f.env, "topology", "init", "--from", f.file); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	if r := shardmgr(t, f.env, "migrate"); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	return f
}

// current reads the topology in force through the CLI.
func current(t *testing.T, f fixture) *topology.Topology {
	t.Helper()
	r := shardmgr(t, f.env, "-o", "json", "topology", "show")
	topo, err := topology.Decode([]byte(r.stdout))
	if err != nil {
		t.Fatalf("topology show: %v\n%+v", err, r)
	}
	return topo
}

// unchanged fails unless the topology is still at version want.
func unchanged(t *testing.T, f fixture, want uint64, what string) {
	t.Helper()
	if got := current(t, f).Version; got != want {
		t.Errorf("%s changed the topology: version %d, want %d", what, got, want)
	}
}

func dsnOf(c topology.Conn) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", c.User, c.Host, c.Port, c.Database)
}

// seedUsersAt writes n users on the shard at dsn, their ksids in region 20 with a second hex digit taken
// from nibbles (so "01234567" keeps them in 20-2080) and the rest spread by md5. Emails carry nibbles,
// so that users seeded on two shards stay unique, as the email directory keeps them in production.
func seedUsersAt(t *testing.T, dsn string, n int, nibbles string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
		SELECT decode('20' || substr($2::text, g % length($2::text) + 1, 1) || substr(md5(g::text), 1, 13), 'hex'),
		       decode(substr(md5($2::text), 1, 8) || lpad(to_hex(g), 32, '0'), 'hex'),
		       'u' || g || '.' || $2::text || '@example.test', 'u' || g || '.' || $2::text || '@example.test', 'User ' || g, 'client', 'us-east'
		  FROM generate_series(1, $1::int) g`, n, nibbles); err != nil {
		t.Fatalf("seeding: %v", err)
	}
}

func TestShardAdd(t *testing.T) {
	f := reshardFixture(t)
	pg := testenv.Postgres(t)
	fresh := pg.NewDatabase(t)
	used := f.topo.Shards[0].Conn

	// A database with rows in a sharded schema.
	full := pg.NewDatabase(t)
	if _, err := migrate.Up(context.Background(), []migrate.Target{{Shard: "full", DSN: full}}, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	seedUsersAt(t, full, 3, "0")

	withPassword := strings.Replace(fresh, "postgres://meridian@", "postgres://meridian:s3cret-pw@", 1)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no dsn", []string{"shard", "add", "us-east-3", "--region", "us-east"}, ExitUsage, "--dsn are required"},
		{"no name", []string{"shard", "add", "--region", "us-east", "--dsn", fresh}, ExitUsage, "accepts 1 arg"},
		{"not a URL", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", "host=127.0.0.1 dbname=x"}, ExitUsage, "must be a URL"},
		{"bad port", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", "postgres://meridian@127.0.0.1:notaport/x"}, ExitUsage, "must be a URL"},
		{"password in the DSN", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", withPassword}, ExitUsage, "carries a password"},
		{"password parameter", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", fresh + "&password=s3cret-pw"}, ExitUsage, "carries a password"},
		{"other parameter", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", fresh + "&application_name=x"}, ExitUsage, "application_name"},
		{"no database", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", "postgres://meridian@127.0.0.1:5432"}, ExitUsage, "no database"},
		{"both password flags", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", fresh, "--password-env", "X", "--password-file", "/x"}, ExitUsage, "exclusive"},
		{"unknown region", []string{"shard", "add", "mars-1", "--region", "mars", "--dsn", fresh}, ExitUsage, "unknown region \"mars\""},
		{"duplicate name", []string{"shard", "add", "us-east-1", "--region", "us-east", "--dsn", fresh}, ExitError, "already in the topology: us-east-1"},
		{"already a shard", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", dsnOf(used)}, ExitError, "is already shard us-east-1"},
		{"bad name", []string{"shard", "add", "US_East", "--region", "us-east", "--dsn", fresh}, ExitError, "must be lowercase"},
		{"not empty", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", full}, ExitError, "auth.users hold rows"},
		{"unreachable", []string{"--timeout", "5s", "shard", "add", "us-east-3", "--region", "us-east", "--dsn", "postgres://meridian@127.0.0.1:1/x?sslmode=disable"}, ExitError, "connecting to 127.0.0.1:1/x"},
		{"password env unset", []string{"shard", "add", "us-east-3", "--region", "us-east", "--dsn", fresh, "--password-env", "MERIDIAN_TEST_UNSET_PASSWORD"}, ExitError, "MERIDIAN_TEST_UNSET_PASSWORD is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := shardmgr(t, f.env, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
			if strings.Contains(r.stderr+r.stdout, "s3cret-pw") {
				t.Fatalf("the password was echoed: %q", r.stderr)
			}
			unchanged(t, f, 1, tc.name)
		})
	}
	// The refused non-empty database kept its rows; the fresh one got nothing.
	if n := countRows(t, full, "auth.users"); n != 3 {
		t.Fatalf("the non-empty database has %d users", n)
	}

	// Added: migrated first, then in the topology, owning nothing, its password named, not stored.
	t.Setenv("MERIDIAN_TEST_SHARD_PASSWORD", "s3cret-pw") // the test cluster trusts loopback; the name is what matters
	r := shardmgr(t, f.env, "shard", "add", "us-east-3", "--region", "us-east", "--dsn", fresh, "--password-env", "MERIDIAN_TEST_SHARD_PASSWORD", "--max-conns", "4")
	if r.code != 0 || !strings.Contains(r.stdout, "shard us-east-3 added to region us-east") || !strings.Contains(r.stdout, "topology version 2") {
		t.Fatalf("add: %+v", r)
	}
	topo := current(t, f)
	s, ok := topo.Shard("us-east-3")
	if !ok || s.Region != "us-east" || s.Conn.PasswordEnv != "MERIDIAN_TEST_SHARD_PASSWORD" || s.Conn.MaxConns != 4 || s.Conn.SSLMode != "disable" || len(topo.RangesOf("us-east-3")) != 0 {
		t.Fatalf("shard in the topology: %+v %v", s, ok)
	}
	if doc, _ := topo.Encode(); strings.Contains(string(doc), "s3cret-pw") {
		t.Fatal("the password is in the topology")
	}
	if n := countRows(t, fresh, "auth.users"); n != 0 {
		t.Fatalf("users on the new shard: %d", n)
	}
	r = shardmgr(t, f.env, "migrate", "status", "--shard", "us-east-3")
	if r.code != 0 || !strings.Contains(r.stdout, "us-east-3") || !strings.Contains(r.stdout, "none") {
		t.Fatalf("migrate status of the new shard: %+v", r)
	}
	if r := shardmgr(t, f.env, "shard", "add", "us-east-3", "--region", "us-east", "--dsn", fresh); r.code != ExitError || !strings.Contains(r.stderr, "already in the topology") {
		t.Fatalf("second add: %+v", r)
	}

	// JSON, and a database that has the schema already (but no rows) is fine.
	other := pg.NewDatabase(t)
	if _, err := migrate.Up(context.Background(), []migrate.Target{{Shard: "x", DSN: other}}, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	r = shardmgr(t, f.env, "-o", "json", "shard", "add", "eu-west-3", "--region", "eu-west", "--dsn", other)
	var out struct {
		Shard             string
		Version           uint64
		MigrationsApplied []int64 `json:"migrations_applied"`
		SchemaVersion     int64   `json:"schema_version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || out.Shard != "eu-west-3" || out.Version != 3 || len(out.MigrationsApplied) != 0 || out.SchemaVersion == 0 {
		t.Fatalf("add -o json: %v %+v", err, r)
	}
}

func countRows(t *testing.T, dsn, table string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return -1
	}
	return n
}

func consulKV(t *testing.T, f fixture) *consul.KV {
	t.Helper()
	c := testenv.ConsulClient(t, f.agent, local.RoleShardmgr)
	return c.KV()
}

func TestShardRemove(t *testing.T) {
	f := reshardFixture(t)
	fresh := testenv.Postgres(t).NewDatabase(t)
	if r := shardmgr(t, f.env, "shard", "add", "us-east-3", "--region", "us-east", "--dsn", fresh); r.code != 0 {
		t.Fatalf("add: %+v", r)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"owns a keyrange", []string{"shard", "remove", "us-east-1", "--yes"}, ExitError, "owns [20-2080]"},
		{"unknown", []string{"shard", "remove", "nope", "--yes"}, ExitUsage, "no shard \"nope\""},
		{"no confirmation", []string{"shard", "remove", "us-east-3"}, ExitUsage, "pass --yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := shardmgr(t, f.env, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
			unchanged(t, f, 2, tc.name)
		})
	}

	// An unfinished move into the shard (failed: resumable) blocks the removal; a finished one does not.
	kv := consulKV(t, f)
	prefix := f.env["MERIDIAN_MOVES_PREFIX"]
	if _, err := kv.Put(&consul.KVPair{Key: prefix + "m1", Value: []byte(`{"id":"m1","keyrange":"20-2080","source":"us-east-1","target":"us-east-3","status":"failed","step":"copy"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(&consul.KVPair{Key: prefix + "m0", Value: []byte(`{"id":"m0","target":"us-east-3","status":"done"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	if r := shardmgr(t, f.env, "shard", "remove", "us-east-3", "--yes"); r.code != ExitError || !strings.Contains(r.stderr, "target of an unfinished move (m1)") {
		t.Fatalf("remove during a move: %+v", r)
	}
	unchanged(t, f, 2, "remove during a move")
	if _, err := kv.Delete(prefix+"m1", nil); err != nil {
		t.Fatal(err)
	}

	r := shardmgr(t, f.env, "shard", "remove", "us-east-3", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "was not dropped") || !strings.Contains(r.stdout, "version 3") {
		t.Fatalf("remove: %+v", r)
	}
	if _, ok := current(t, f).Shard("us-east-3"); ok {
		t.Fatal("us-east-3 is still in the topology")
	}
	if n := countRows(t, fresh, "auth.users"); n != 0 {
		t.Fatalf("the removed shard's database is gone or changed (%d)", n)
	}
}

func TestSplit(t *testing.T) {
	f := reshardFixture(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad keyrange", []string{"split", "20-zz", "--at", "2040", "--yes"}, ExitUsage, "keyrange \"20-zz\""},
		{"no point", []string{"split", "20-2080", "--yes"}, ExitUsage, "--at <hex> is required"},
		{"bad point", []string{"split", "20-2080", "--at", "20g", "--yes"}, ExitUsage, "whole bytes of hex"},
		{"point too long", []string{"split", "20-2080", "--at", "2040000000000000ff", "--yes"}, ExitUsage, "whole bytes of hex"},
		{"outside", []string{"split", "20-2080", "--at", "30", "--yes"}, ExitError, "not strictly inside 20-2080"},
		{"at the start", []string{"split", "20-2080", "--at", "20", "--yes"}, ExitError, "not strictly inside 20-2080"},
		{"at the end", []string{"split", "20-2080", "--at", "2080", "--yes"}, ExitError, "not strictly inside 20-2080"},
		{"inside an assignment", []string{"split", "20-2040", "--at", "2020", "--yes"}, ExitError, "lies inside 20-2080 on us-east-1"},
		{"spans two", []string{"split", "2040-20c0", "--at", "2080", "--yes"}, ExitError, "spans 2 assignments"},
		{"no confirmation", []string{"split", "20-2080", "--at", "2040"}, ExitUsage, "into 20-2040 and 2040-2080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := shardmgr(t, f.env, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
			unchanged(t, f, 1, tc.name)
		})
	}

	// Another holder of the shard lock: refused, nothing changed.
	c := testenv.ConsulClient(t, f.agent, local.RoleShardmgr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := shardlock.Acquire(ctx, c, f.env["MERIDIAN_LOCK_KEY"], "test holder")
	if err != nil {
		t.Fatal(err)
	}
	if r := shardmgr(t, f.env, "split", "20-2080", "--at", "2040", "--yes"); r.code != ExitError || !strings.Contains(r.stderr, `held by "test holder"`) {
		t.Fatalf("split under another's lock: %+v", r)
	}
	unchanged(t, f, 1, "split under another's lock")
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}

	r := shardmgr(t, f.env, "split", "20-2080", "--at", "2040", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "20-2040 and 2040-2080, both serving on us-east-1; topology version 2") {
		t.Fatalf("split: %+v", r)
	}
	topo := current(t, f)
	got := topo.RangesOf("us-east-1")
	if len(got) != 2 || got[0].Range.String() != "20-2040" || got[1].Range.String() != "2040-2080" || got[0].State != topology.Serving || got[1].State != topology.Serving {
		t.Fatalf("us-east-1 after the split: %+v", got)
	}
	// A long point, in JSON.
	r = shardmgr(t, f.env, "-o", "json", "split", "2040-2080", "--at", "20612345", "--yes")
	var out struct {
		Halves  []string
		Version uint64
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || out.Version != 3 || strings.Join(out.Halves, " ") != "2040-20612345 20612345-2080" {
		t.Fatalf("split -o json: %v %+v", err, r)
	}

	// A keyrange a move works on is not split.
	frozen := current(t, f)
	for i := range frozen.KeyRanges {
		if frozen.KeyRanges[i].Range.String() == "2080-21" {
			frozen.KeyRanges[i].State = topology.Frozen
		}
	}
	if r := shardmgr(t, f.env, "topology", "apply", "--from", writeTopo(t, frozen)); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if r := shardmgr(t, f.env, "split", "2080-21", "--at", "20c0", "--yes"); r.code != ExitError || !strings.Contains(r.stderr, "is frozen") {
		t.Fatalf("split of a frozen keyrange: %+v", r)
	}
	unchanged(t, f, 4, "split of a frozen keyrange")
}

func TestPlanAndRebalance(t *testing.T) {
	f := reshardFixture(t)
	// us-east is skewed: 2,000 users on us-east-1, 100 on us-east-2.
	seedUsersAt(t, dsnOf(f.topo.Shards[0].Conn), 2000, "01234567")
	seedUsersAt(t, dsnOf(f.topo.Shards[1].Conn), 100, "89abcdef")

	r := shardmgr(t, f.env, "plan", "--region", "us-east")
	if r.code != 0 {
		t.Fatalf("plan: %+v", r)
	}
	for _, want := range []string{"2 steps", "split 20-2080 on us-east-1 at ", "holds 95.2% of us-east's rows", "from us-east-1 to us-east-2", "rebalance --region us-east --apply --yes"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan does not say %q:\n%s", want, r.stdout)
		}
	}
	r = shardmgr(t, f.env, "-o", "json", "plan", "--region", "us-east")
	var p struct {
		Version uint64
		Steps   []struct {
			Kind, KeyRange, Shard, Target, At string
			Halves                            []string
		}
		Balance []struct {
			Shard         string
			Before, After struct{ Rows int64 }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || r.code != 0 {
		t.Fatalf("plan -o json: %v %+v", err, r)
	}
	if len(p.Steps) != 2 || p.Steps[0].Kind != "split" || p.Steps[0].KeyRange != "20-2080" || p.Steps[1].Kind != "move" ||
		p.Steps[1].KeyRange != p.Steps[0].Halves[0] || p.Steps[1].Target != "us-east-2" {
		t.Fatalf("plan -o json steps: %+v", p.Steps)
	}
	if len(p.Balance) != 2 || p.Balance[0].Before.Rows != 2000 || p.Balance[1].Before.Rows != 100 {
		t.Fatalf("plan -o json balance: %+v", p.Balance)
	}
	// Every region, and flags checked.
	if r := shardmgr(t, f.env, "plan"); r.code != 0 || !strings.Contains(r.stdout, "ap-south: no rows") {
		t.Fatalf("plan of every region: %+v", r)
	}
	for _, args := range [][]string{{"plan", "--region", "mars"}, {"plan", "--split-share", "0"}, {"plan", "--max-steps", "0"}, {"rebalance"}, {"rebalance", "--region", "mars", "--apply"}} {
		if r := shardmgr(t, f.env, args...); r.code != ExitUsage {
			t.Errorf("%v: %+v", args, r)
		}
	}
	unchanged(t, f, 1, "plan")

	// Without --yes rebalance shows the plan and runs nothing.
	if r := shardmgr(t, f.env, "rebalance", "--region", "us-east", "--apply"); r.code != ExitUsage || !strings.Contains(r.stdout, "split 20-2080") || !strings.Contains(r.stderr, "pass --yes to run them") {
		t.Fatalf("rebalance without --yes: %+v", r)
	}
	unchanged(t, f, 1, "rebalance without --yes")

	// With --yes: the split runs, then the move, online, under the same lock.
	r = shardmgr(t, f.env, "rebalance", "--region", "us-east", "--apply", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "step 1/2: done (topology version 2)") ||
		!strings.Contains(r.stdout, "step 2/2: done") || !strings.Contains(r.stdout, "rebalance done: 2 steps") {
		t.Fatalf("rebalance: %+v", r)
	}
	topo := current(t, f)
	moved := false
	for _, a := range topo.RangesOf("us-east-2") {
		if a.Range.String() == p.Steps[1].KeyRange && a.State == topology.Serving {
			moved = true
		}
	}
	if got := topo.RangesOf("us-east-1"); len(got) != 1 || got[0].Range.String() != p.Steps[0].Halves[1] || !moved {
		t.Fatalf("after rebalance: version %d, us-east-1 %+v, us-east-2 %+v", topo.Version, got, topo.RangesOf("us-east-2"))
	}
	// The lock is free again, and the move is recorded as done.
	if r := shardmgr(t, f.env, "-o", "json", "moves", "--all"); r.code != 0 || !strings.Contains(r.stdout, p.Steps[1].KeyRange) || !strings.Contains(r.stdout, `"done"`) {
		t.Fatalf("moves after rebalance: %+v", r)
	}
	// The next plan starts from the rebalanced region.
	r = shardmgr(t, f.env, "-o", "json", "plan", "--region", "us-east")
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || r.code != 0 {
		t.Fatalf("plan after rebalance: %v %+v", err, r)
	}
	for _, s := range p.Steps {
		if s.Kind == "move" && s.KeyRange == p.Steps[0].KeyRange && s.Target == "us-east-1" {
			t.Fatalf("the plan undoes the rebalance: %+v", p.Steps)
		}
	}
}

func TestPlanWeighsRequests(t *testing.T) {
	f := reshardFixture(t)
	seedUsersAt(t, dsnOf(f.topo.Shards[0].Conn), 500, "01234567")
	seedUsersAt(t, dsnOf(f.topo.Shards[1].Conn), 500, "89abcdef")

	// The region's nodes under a service name of the test's own.
	topo := current(t, f)
	topo.Regions[0].APIService = "test-" + strings.ReplaceAll(f.env["MERIDIAN_LOCK_KEY"], "/", "-")
	if r := shardmgr(t, f.env, "topology", "apply", "--from", writeTopo(t, topo)); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	metrics := "# TYPE meridian_api_keyrange_requests_total counter\n" +
		"meridian_api_keyrange_requests_total{keyrange=\"20-2080\",kind=\"read\",shard=\"us-east-1\"} 100\n" +
		"meridian_api_keyrange_requests_total{keyrange=\"2080-21\",kind=\"read\",shard=\"us-east-2\"} 600\n" +
		"meridian_api_keyrange_requests_total{keyrange=\"2080-21\",kind=\"write\",shard=\"us-east-2\"} 300\n"
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(metrics))
	}))
	t.Cleanup(node.Close)
	host, port, _ := net.SplitHostPort(node.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	c := testenv.ConsulClient(t, f.agent, local.RoleNode) // the stand-in node registers as nodes do
	reg := &consul.AgentServiceRegistration{ID: topo.Regions[0].APIService + "-1", Name: topo.Regions[0].APIService, Address: host, Port: p,
		Check: &consul.AgentServiceCheck{CheckID: topo.Regions[0].APIService + "-1-ttl", TTL: "1h", Status: consul.HealthPassing}}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Agent().ServiceDeregister(reg.ID) })

	r := shardmgr(t, f.env, "plan", "--region", "us-east")
	for _, want := range []string{"split 2080-21 on us-east-2", "holds 90.0% of us-east's requests", "to us-east-1", "us-east  us-east-2  2080-21"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("plan by load does not say %q: %+v", want, r)
		}
	}
	if r := shardmgr(t, f.env, "plan", "--region", "us-east", "--no-requests"); r.code != 0 || !strings.Contains(r.stdout, "0 steps") || !strings.Contains(r.stdout, "us-east: balanced") {
		t.Errorf("plan by rows alone: %+v", r)
	}
}
