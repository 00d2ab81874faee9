package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// update rewrites the golden files under testdata/: go test ./shardmgr/cli -run Status -update.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the tests produce")

// golden compares got with testdata/name, or rewrites the file under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what the test produced; if the change is meant, rerun with -update and review the diff.\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

var (
	// The test databases' addresses and names change with every run; their sizes with PostgreSQL's version.
	volatileDatabase = regexp.MustCompile(`\b[0-9.]+:[0-9]+/t_[A-Za-z0-9_]+`)
	volatileBytes    = regexp.MustCompile(`\b[0-9]+(\.[0-9])? [KMGTPE]?i?B\b`)
	columnGap        = regexp.MustCompile(`  +`)
)

// normalizeTable replaces what changes from run to run in a table command's output with fixed
// placeholders, then lines the columns up again as the command does (tabwriter, padding 2), so the
// golden file keeps the layout.
func normalizeTable(out string) string {
	out = volatileDatabase.ReplaceAllString(out, "HOST:PORT/DATABASE")
	out = volatileBytes.ReplaceAllString(out, "SIZE")
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, line := range strings.SplitAfter(out, "\n") {
		if line == "" {
			continue
		}
		if !strings.Contains(line, "  ") { // a sentence or a blank line ends the table above it
			tw.Flush()
			b.WriteString(line)
			continue
		}
		fmt.Fprint(tw, columnGap.ReplaceAllString(strings.TrimRight(line, " \n"), "\t")+"\n")
	}
	tw.Flush()
	return b.String()
}

type run struct {
	code           int
	stdout, stderr string
}

func shardmgr(t *testing.T, env map[string]string, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return run{code, out.String(), errb.String()}
}

// fixture is a Consul key of the test's own and six shard databases on the test PostgreSQL.
type fixture struct {
	env  map[string]string
	file string // topology file pointing at the test's databases
	topo *topology.Topology
	// agent is the test Consul; env holds its shardmgr token file.
	agent *local.Consul
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	agent := testenv.Consul(t)
	pg := testenv.Postgres(t)
	topo := topology.Example()
	for i := range topo.Shards {
		cfg, err := pgx.ParseConfig(pg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		topo.Shards[i].Conn = topology.Conn{Host: cfg.Host, Port: int(cfg.Port), Database: cfg.Database, User: cfg.User, SSLMode: "disable"}
	}
	data, err := topo.Encode()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "topology.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	key := "test/" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "/topology"
	env := map[string]string{"CONSUL_HTTP_ADDR": agent.HTTPAddr(), "CONSUL_HTTP_TOKEN_FILE": agent.TokenFile(local.RoleShardmgr), "MERIDIAN_TOPOLOGY_KEY": key}
	return fixture{env: env, agent: agent, file: file, topo: topo}
}

func TestUsageErrors(t *testing.T) {
	env := map[string]string{"CONSUL_HTTP_ADDR": "127.0.0.1:1"}
	for _, args := range [][]string{
		{"frobnicate"},
		{"status", "--bogus"},
		{"--output", "xml", "topology", "show"},
		{"topology", "init"},
		{"topology", "init", "--from"},
		{"topology", "show", "extra-arg"},
		{"--timeout", "0s", "status"},
	} {
		r := shardmgr(t, env, args...)
		if r.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, r.code, ExitUsage, r.stderr)
		}
		if !strings.HasPrefix(r.stderr, "shardmgr: ") {
			t.Errorf("%v: stderr %q does not say what is wrong", args, r.stderr)
		}
	}
	if r := shardmgr(t, env, "--help"); r.code != ExitOK || !strings.Contains(r.stdout, "topology") {
		t.Errorf("--help: exit %d, %q", r.code, r.stdout)
	}
}

func TestConsulUnreachable(t *testing.T) {
	r := shardmgr(t, map[string]string{"CONSUL_HTTP_ADDR": "127.0.0.1:1"}, "--timeout", "2s", "topology", "show")
	if r.code != ExitError || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// Consul runs with ACLs on: without a token, or with a router's, shardmgr changes nothing and says
// which token it needs.
func TestConsulToken(t *testing.T) {
	f := newFixture(t)
	for name, env := range map[string]map[string]string{
		"no token":     {"CONSUL_HTTP_ADDR": f.env["CONSUL_HTTP_ADDR"], "MERIDIAN_TOPOLOGY_KEY": f.env["MERIDIAN_TOPOLOGY_KEY"]},
		"router token": {"CONSUL_HTTP_ADDR": f.env["CONSUL_HTTP_ADDR"], "MERIDIAN_TOPOLOGY_KEY": f.env["MERIDIAN_TOPOLOGY_KEY"], "CONSUL_HTTP_TOKEN_FILE": f.agent.TokenFile(local.RoleRouter)},
	} {
		r := shardmgr(t, env, "topology", "init", "--from", f.file)
		if r.code != ExitError || !strings.Contains(r.stderr, "refused the token") ||
			strings.Contains(r.stderr, "already exists") || !strings.Contains(r.stderr, "CONSUL_HTTP_TOKEN_FILE") {
			t.Errorf("%s: topology init: exit %d, stderr %q; want a refusal naming CONSUL_HTTP_TOKEN_FILE", name, r.code, r.stderr)
		}
	}
	if r := shardmgr(t, f.env, "topology", "show"); r.code != ExitError || !strings.Contains(r.stderr, "topology init") {
		t.Errorf("the refused init wrote a topology: %+v", r)
	}
	missing := map[string]string{"CONSUL_HTTP_ADDR": f.env["CONSUL_HTTP_ADDR"], "CONSUL_HTTP_TOKEN_FILE": filepath.Join(t.TempDir(), "none.token")}
	if r := shardmgr(t, missing, "topology", "show"); r.code != ExitUsage || !strings.Contains(r.stderr, "CONSUL_HTTP_TOKEN_FILE") {
		t.Errorf("missing token file: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestValidateFiles(t *testing.T) {
	good := filepath.Join("..", "..", "deploy", "regions", "local", "topology.yaml")
	if r := shardmgr(t, nil, "topology", "validate", "--from", good); r.code != 0 || !strings.Contains(r.stdout, "valid (3 regions, 6 shards, 6 keyranges)") {
		t.Fatalf("good file: %+v", r)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, _ := os.ReadFile(good)
	if err := os.WriteFile(bad, bytes.Replace(data, []byte(`range: "2080-21"`), []byte(`range: "2080-2f"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	r := shardmgr(t, nil, "topology", "validate", "--from", bad)
	if r.code != ExitError || !strings.Contains(r.stderr, "outside region us-east") {
		t.Fatalf("bad file: %+v", r)
	}
}

func TestTopologyLifecycle(t *testing.T) {
	f := newFixture(t)
	if r := shardmgr(t, f.env, "topology", "show"); r.code != ExitError || !strings.Contains(r.stderr, "topology init") {
		t.Fatalf("show before init: %+v", r)
	}
	// A bad file changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"regions": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := shardmgr(t, f.env, "topology", "init", "--from", bad); r.code != ExitError || !strings.Contains(r.stderr, "at least one region") {
		t.Fatalf("init with a bad file: %+v", r)
	}
	if r := shardmgr(t, f.env, "topology", "show"); r.code != ExitError {
		t.Fatalf("a bad init wrote something: %+v", r)
	}

	if r := shardmgr(t, f.env, "topology", "init", "--from", f.file); r.code != 0 || !strings.Contains(r.stdout, "version 1") {
		t.Fatalf("init: %+v", r)
	}
	if r := shardmgr(t, f.env, "topology", "init", "--from", f.file); r.code != ExitError || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("second init: %+v", r)
	}
	r := shardmgr(t, f.env, "topology", "show")
	for _, want := range []string{"us-east", "eu-west", "ap-south", "20-2080", "meridian-api-eu-west", "ap-south-2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show does not mention %s:\n%s", want, r.stdout)
		}
	}
	r = shardmgr(t, f.env, "-o", "json", "topology", "show")
	got, err := topology.Decode([]byte(r.stdout))
	if err != nil {
		t.Fatalf("show -o json is not a topology: %v\n%s", err, r.stdout)
	}
	if got.Version != 1 || len(got.Shards) != 6 {
		t.Fatalf("show -o json: version %d, %d shards", got.Version, len(got.Shards))
	}

	// apply: a frozen keyrange is protected unless --force.
	frozen := f.topo.Clone()
	frozen.KeyRanges[0].State = topology.Frozen
	frozenFile := writeTopo(t, frozen)
	if r := shardmgr(t, f.env, "topology", "apply", "--from", frozenFile); r.code != 0 || !strings.Contains(r.stdout, "version 2") {
		t.Fatalf("apply: %+v", r)
	}
	if r := shardmgr(t, f.env, "topology", "apply", "--from", f.file); r.code != ExitError || !strings.Contains(r.stderr, "frozen") {
		t.Fatalf("apply over a frozen keyrange: %+v", r)
	}
	if r := shardmgr(t, f.env, "topology", "apply", "--from", f.file, "--expect-version", "1"); r.code != ExitError || !strings.Contains(r.stderr, "not the expected 1") {
		t.Fatalf("apply with a stale --expect-version: %+v", r)
	}
	if r := shardmgr(t, f.env, "topology", "apply", "--from", f.file, "--force", "--expect-version", "2"); r.code != 0 || !strings.Contains(r.stdout, "version 3") {
		t.Fatalf("apply --force: %+v", r)
	}
}

func writeTopo(t *testing.T, topo *topology.Topology) string {
	t.Helper()
	data, err := topo.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "t.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMigrateAndStatus(t *testing.T) {
	f := newFixture(t)
	if r := shardmgr(t, f.env, "topology", "init", "--from", f.file); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r := shardmgr(t, f.env, "migrate")
	if r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	if strings.Count(r.stdout, "ok") != 6 {
		t.Fatalf("migrate did not report six shards ok:\n%s", r.stdout)
	}
	r = shardmgr(t, f.env, "-o", "json", "migrate")
	var up struct {
		Shards []struct {
			Shard   string
			Applied []int64
			Current int64
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil || len(up.Shards) != 6 {
		t.Fatalf("migrate -o json: %v\n%s", err, r.stdout)
	}
	for _, s := range up.Shards {
		if len(s.Applied) != 0 || s.Current == 0 {
			t.Fatalf("second migrate applied %v on %s (current %d)", s.Applied, s.Shard, s.Current)
		}
	}
	if r := shardmgr(t, f.env, "migrate", "status"); r.code != 0 || strings.Count(r.stdout, "none") != 6 {
		t.Fatalf("migrate status: %+v", r)
	}
	if r := shardmgr(t, f.env, "migrate", "--shard", "nope"); r.code != ExitUsage || !strings.Contains(r.stderr, "no such shard") {
		t.Fatalf("migrate --shard nope: %+v", r)
	}
	// down: one shard, an explicit version, and a confirmation.
	for _, args := range [][]string{
		{"migrate", "down", "--to", "3", "--yes"},
		{"migrate", "down", "--shard", "us-east-2", "--shard", "eu-west-1", "--to", "3", "--yes"},
		{"migrate", "down", "--shard", "us-east-2", "--yes"},
		{"migrate", "down", "--shard", "us-east-2", "--to", "3"},
	} {
		if r := shardmgr(t, f.env, args...); r.code != ExitUsage {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if r := shardmgr(t, f.env, "migrate", "down", "--shard", "us-east-2", "--to", "3", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "rolled back to version 3") {
		t.Fatalf("migrate down: %+v", r)
	}
	if r := shardmgr(t, f.env, "migrate", "status"); r.code != 0 || !strings.Contains(r.stdout, "us-east-2   3        4") {
		t.Fatalf("status after down: %+v", r)
	}
	if r := shardmgr(t, f.env, "migrate"); r.code != 0 {
		t.Fatalf("migrate after down: %+v", r)
	}

	// Put rows on one shard so status has something to count.
	s0 := f.topo.Shards[0].Conn
	conn, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", s0.User, s0.Host, s0.Port, s0.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `
		INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
		SELECT decode('20' || lpad(to_hex(g), 14, '0'), 'hex'), decode(lpad(to_hex(g), 40, '0'), 'hex'),
		       'u' || g || '@example.test', 'u' || g || '@example.test', 'User ' || g, 'client', 'us-east'
		  FROM generate_series(1, 25) g`); err != nil {
		t.Fatalf("seeding rows: %v", err)
	}

	r = shardmgr(t, f.env, "status", "--exact")
	if r.code != 0 {
		t.Fatalf("status: %+v", r)
	}
	for _, want := range []string{"3 regions, 6 shards", "us-east-1", "ap-south-2", "20-2080", "25"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status does not show %q:\n%s", want, r.stdout)
		}
	}
	golden(t, "status.txt", normalizeTable(r.stdout))
	r = shardmgr(t, f.env, "-o", "json", "status", "--exact")
	var st struct {
		Regions   []regionStats
		Shards    []shardStats
		KeyRanges []keyRangeStats
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	if len(st.Regions) != 3 || len(st.Shards) != 6 || st.Shards[0].Rows != 25 || !st.Shards[0].Exact || st.Regions[0].Rows != 25 {
		t.Fatalf("status -o json: %+v", st)
	}
	if len(st.KeyRanges) != 6 {
		t.Fatalf("status -o json: %d keyranges, want 6: %+v", len(st.KeyRanges), st.KeyRanges)
	}
	for i, k := range st.KeyRanges {
		wantRows := int64(0)
		if i == 0 {
			wantRows = 25
		}
		if k.Rows == nil || k.Bytes == nil || *k.Rows != wantRows || !k.Exact || k.Shard != f.topo.Shards[i].Name || k.State != "serving" || i == 0 && *k.Bytes <= 0 {
			t.Errorf("status -o json: keyrange %d: %+v, want %d exact rows on %s", i, k, wantRows, f.topo.Shards[i].Name)
		}
	}

	// A shard that does not answer: status still reports the others and exits non-zero.
	down := f.topo.Clone()
	down.Shards[4].Conn.Port = 1
	if r := shardmgr(t, f.env, "topology", "apply", "--from", writeTopo(t, down)); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	r = shardmgr(t, f.env, "status", "--shard-timeout", "2s")
	if r.code != ExitError || !strings.Contains(r.stdout, "unreachable") || !strings.Contains(r.stderr, "1 of 6 shards") || !strings.Contains(r.stdout, "us-east-1") {
		t.Fatalf("status with a shard down: %+v", r)
	}
	// Without --exact a keyrange alone on its shard shows the shard's estimate; the down shard's, nothing.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^20-2080 +us-east-1 +us-east +serving +~[0-9]+ +[0-9.]+ [KMG]?i?B$`),
		regexp.MustCompile(`(?m)^60-6080 +ap-south-1 +ap-south +serving +- +-$`),
		regexp.MustCompile(`(?m)^-: not known`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("status with a shard down does not match %s:\n%s", want, r.stdout)
		}
	}
}
