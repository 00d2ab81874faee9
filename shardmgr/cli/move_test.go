package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local"
	mfixture "github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/shardmgr/move"
)

var moveIDLine = regexp.MustCompile(`(?m)^move ([0-9]{8}_[0-9]{6}_[0-9a-f]{4}): keyrange`)

// TestMoveCommands drives a move through the command line: refusals, a crash injected with
// MERIDIAN_FAULT, migrate refused while the move is unfinished, resume, the listing, and an abort
// refused after the flip. The region has no API node registered, which shardmgr/fleet counts as
// every node holding the version (nobody takes writes).
// moveFixture is a fixture with its own shard lock and move records, and 300 users on us-east-1 in
// us-east's lower half (20-2080); env is the CLI's environment for it.
func moveFixture(t *testing.T) (*mfixture.Fixture, map[string]string, *pgxpool.Pool) {
	t.Helper()
	f := mfixture.New(t, mfixture.Options{Shards: true, Consul: true})
	env := map[string]string{
		"CONSUL_HTTP_ADDR":       f.ConsulAddr,
		"CONSUL_HTTP_TOKEN_FILE": f.ConsulAgent.TokenFile(local.RoleShardmgr),
		"MERIDIAN_TOPOLOGY_KEY":  f.Key,
		"MERIDIAN_LOCK_KEY":      "meridian-test/" + f.Prefix + "/lock",
		"MERIDIAN_MOVES_PREFIX":  "meridian-test/" + f.Prefix + "/moves/",
	}
	t.Cleanup(func() { _, _ = f.Consul.KV().DeleteTree(env["MERIDIAN_MOVES_PREFIX"], nil) })
	ctx := context.Background()
	src, err := pgxpool.New(ctx, f.DSN["us-east-1"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	if _, err := src.Exec(ctx, `
		INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
		SELECT decode('20' || lpad(to_hex(g), 14, '0'), 'hex'), decode(lpad(to_hex(g), 40, '0'), 'hex'),
		       'u' || g || '@example.test', 'u' || g || '@example.test', 'User ' || g, 'client', 'us-east'
		  FROM generate_series(1, 300) g`); err != nil {
		t.Fatal(err)
	}
	return f, env, src
}

func TestMoveCommands(t *testing.T) {
	f, env, src := moveFixture(t)
	ctx := context.Background()
	dst, err := pgxpool.New(ctx, f.DSN["us-east-2"])
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"move", "20-2080", "--to", "eu-west-1", "--yes"}, ExitError, "region"},
		{[]string{"move", "20-2040", "--to", "us-east-2", "--yes"}, ExitError, "not one assignment"},
		{[]string{"move", "20-2080", "--to", "us-east-2"}, ExitUsage, "--yes"},
		{[]string{"move", "20-2080"}, ExitUsage, "--to"},
		{[]string{"move", "--resume", "x", "--abort", "y"}, ExitUsage, "or --resume"},
		{[]string{"move", "zz", "--to", "us-east-2", "--yes"}, ExitUsage, "keyrange"},
		{[]string{"move", "20-2080", "--to", "us-east-2", "--yes", "--max-pause", "3s"}, ExitUsage, "below the nodes' write hold"},
		{[]string{"move", "--resume", "20990101_000000_0000"}, ExitError, "no such move"},
	} {
		r := shardmgr(t, env, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}

	// A crash right after the copy: the process exits (here: Exit records the code).
	var exited []int
	var out, errb bytes.Buffer
	faultEnv := map[string]string{"MERIDIAN_FAULT": "copy"}
	for k, v := range env {
		faultEnv[k] = v
	}
	code := Run(ctx, []string{"move", "20-2080", "--to", "us-east-2", "--yes"}, Env{
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return faultEnv[k] }, Exit: func(c int) { exited = append(exited, c) },
	})
	if len(exited) != 1 || exited[0] != ExitError || code != ExitError || !strings.Contains(errb.String(), "MERIDIAN_FAULT=copy") {
		t.Fatalf("move with MERIDIAN_FAULT=copy: exit %d, Exit calls %v, stderr %q", code, exited, errb.String())
	}
	m := moveIDLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the move's ID is not printed first:\n%s", out.String())
	}
	id := m[1]
	if !strings.HasPrefix(out.String(), "move "+id) {
		t.Errorf("output does not start with the move ID:\n%s", out.String())
	}

	r := shardmgr(t, env, "moves")
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "running") || !strings.Contains(r.stdout, "us-east-1 → us-east-2") {
		t.Fatalf("moves after the crash: %+v", r)
	}
	if !strings.Contains(r.stdout, "replication object on us-east-1: slot meridian_move_"+id) {
		t.Errorf("moves does not list the running move's slot:\n%s", r.stdout)
	}
	if r := shardmgr(t, env, "migrate"); r.code != ExitError || !strings.Contains(r.stderr, "not finished") {
		t.Fatalf("migrate during an unfinished move: %+v", r)
	}

	r = shardmgr(t, env, "move", "--resume", id)
	if r.code != 0 || !strings.Contains(r.stdout, "done") || !strings.Contains(r.stdout, "write pause") {
		t.Fatalf("resume: %+v", r)
	}
	t.Logf("move --resume %s:\n%s", id, r.stdout)
	r = shardmgr(t, env, "moves")
	if r.code != 0 || !strings.Contains(r.stdout, "no move running") {
		t.Fatalf("moves after the move: %+v", r)
	}
	t.Logf("moves --all:\n%s", shardmgr(t, env, "moves", "--all").stdout)
	r = shardmgr(t, env, "-o", "json", "moves", "--all")
	var listed struct {
		Moves []struct {
			ID, Status, Step string
			Steps            []move.StepTiming
			WritePauseMS     float64 `json:"write_pause_ms"`
		}
		Left []any `json:"replication_objects"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || r.code != 0 {
		t.Fatalf("moves --all -o json: %v %+v", err, r)
	}
	if len(listed.Moves) != 1 || listed.Moves[0].ID != id || listed.Moves[0].Status != "done" || listed.Moves[0].WritePauseMS <= 0 || len(listed.Moves[0].Steps) < 9 || len(listed.Left) != 0 {
		t.Fatalf("moves --all -o json: %s", r.stdout)
	}
	if r := shardmgr(t, env, "move", "--abort", id, "--yes"); r.code != ExitError || !strings.Contains(r.stderr, "only go forward") {
		t.Fatalf("abort after the move: %+v", r)
	}
	var n int
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM auth.users").Scan(&n); err != nil || n != 300 {
		t.Fatalf("target has %d users (%v), want 300", n, err)
	}
	if err := src.QueryRow(ctx, "SELECT count(*) FROM auth.users").Scan(&n); err != nil || n != 0 {
		t.Fatalf("source has %d users (%v), want 0", n, err)
	}
	if r := shardmgr(t, env, "migrate"); r.code != 0 {
		t.Fatalf("migrate after the move: %+v", r)
	}
}
