package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

func shardConn(t *testing.T, topo *topology.Topology, name string) *pgx.Conn {
	t.Helper()
	s, ok := topo.Shard(name)
	if !ok {
		t.Fatalf("no shard %s", name)
	}
	c := s.Conn
	conn, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", c.User, c.Host, c.Port, c.Database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// seedUsers writes the same 30 users, at ksids 2010..., on a shard.
func seedUsers(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), `
		INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region, created_at, updated_at)
		SELECT decode('2010' || lpad(to_hex(g), 12, '0'), 'hex'), decode(lpad(to_hex(g), 40, '0'), 'hex'),
		       'u' || g || '@example.test', 'u' || g || '@example.test', 'User ' || g, 'client', 'us-east',
		       timestamptz '2024-05-06 07:08:09+00', timestamptz '2024-05-06 07:08:09+00'
		  FROM generate_series(1, 30) g`); err != nil {
		t.Fatalf("seeding: %v", err)
	}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	f.env["MERIDIAN_MOVES_PREFIX"] = "test/TestVerify/moves/" // none: --against has no default
	if r := shardmgr(t, f.env, "topology", "init", "--from", f.file); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	if r := shardmgr(t, f.env, "migrate"); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	east1, east2 := shardConn(t, f.topo, "us-east-1"), shardConn(t, f.topo, "us-east-2")
	seedUsers(t, east1)
	seedUsers(t, east2)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "2010-2020"}, "--against <shard> is required: no unfinished move under test/TestVerify/moves/ covers 2010-2020"},
		{[]string{"verify", "zz-", "--against", "us-east-2"}, "invalid keyrange"},
		{[]string{"verify", "--against", "us-east-2"}, "accepts 1 arg"},
		{[]string{"verify", "2010-2020", "--against", "nope"}, `--against "nope": no such shard`},
		{[]string{"verify", "2010-2020", "--against", "us-east-1"}, "is the owner of 2010-2020 itself"},
		{[]string{"verify", "2010-2020", "--against", "eu-west-1"}, "--against eu-west-1 is in region eu-west, but 2010-2020 belongs to us-east"},
		{[]string{"verify", "20-21", "--against", "eu-west-1"}, "spans 2 keyranges"},
		{[]string{"verify", "30-31", "--against", "us-east-2"}, "in no keyrange"},
		{[]string{"verify", "2010-2020", "--against", "us-east-2", "--limit", "-1"}, "Limit must not be negative"},
		{[]string{"verify", "2010-2020", "--against", "us-east-2", "--table", "users"}, "is not schema.table"},
	} {
		r := shardmgr(t, f.env, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, ExitUsage, c.want)
		}
	}

	r := shardmgr(t, f.env, "verify", "2010-2020", "--against", "us-east-2")
	if r.code != ExitOK || !strings.Contains(r.stdout, "EQUAL: 24 tables, 30 rows, the same on us-east-1 and us-east-2") {
		t.Fatalf("equal: %+v", r)
	}
	r = shardmgr(t, f.env, "-o", "json", "verify", "2010-2020", "--against", "us-east-2")
	var got verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitOK {
		t.Fatalf("equal -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if !got.Equal || got.Source != "us-east-1" || got.Target != "us-east-2" || got.KeyRange.String() != "2010-2020" || len(got.Tables) != 24 {
		t.Fatalf("equal -o json: %+v", got)
	}

	// A row changed on one side, one missing, one outside the keyrange (ignored).
	for _, sql := range []string{
		`UPDATE auth.users SET name = 'Changed' WHERE id = decode(lpad(to_hex(7), 40, '0'), 'hex')`,
		`DELETE FROM auth.users WHERE id = decode(lpad(to_hex(9), 40, '0'), 'hex')`,
		`INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
		 VALUES (decode('2030000000000001', 'hex'), decode(repeat('ff', 20), 'hex'), 'x@example.test', 'x@example.test', 'X', 'client', 'us-east')`,
	} {
		if _, err := east2.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	r = shardmgr(t, f.env, "verify", "2010-2020", "--against", "us-east-2")
	if r.code != ExitError || !strings.Contains(r.stderr, "keyrange 2010-2020 differs between us-east-1 and us-east-2 in 1 of 24 tables: auth.users") {
		t.Fatalf("differing: %+v", r)
	}
	golden(t, "verify_differs.txt", r.stdout)
	r = shardmgr(t, f.env, "-o", "json", "verify", "2010-2020", "--against", "us-east-2", "--table", "auth.users", "--limit", "1")
	got = verifyJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitError {
		t.Fatalf("differing -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if got.Equal || len(got.Tables) != 1 || got.Tables[0].DifferingRows != 2 || len(got.Tables[0].Differing) != 1 ||
		got.Tables[0].Differing[0] != "2010000000000007|"+fmt.Sprintf("%040x", 7) || got.Tables[0].SourceRows != 30 || got.Tables[0].TargetRows != 29 {
		t.Fatalf("differing -o json: %+v", got)
	}

	// A shard that does not answer is a failure, not a usage error.
	down := f.topo.Clone()
	down.Shards[1].Conn.Port = 1
	if r := shardmgr(t, f.env, "topology", "apply", "--from", writeTopo(t, down)); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if r := shardmgr(t, f.env, "--timeout", "5s", "verify", "2010-2020", "--against", "us-east-2"); r.code != ExitError || !strings.Contains(r.stderr, "us-east-2") {
		t.Fatalf("target down: %+v", r)
	}
}

// moveWithFault starts moving kr to target with MERIDIAN_FAULT=fault, so the command exits right
// after that step as a crash would, and returns the move's ID.
func moveWithFault(t *testing.T, env map[string]string, kr, target, fault string) string {
	t.Helper()
	faultEnv := map[string]string{"MERIDIAN_FAULT": fault}
	for k, v := range env {
		faultEnv[k] = v
	}
	var exited []int
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"move", kr, "--to", target, "--yes"}, Env{
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return faultEnv[k] }, Exit: func(c int) { exited = append(exited, c) },
	})
	m := moveIDLine.FindStringSubmatch(out.String())
	if code != ExitError || len(exited) != 1 || m == nil {
		t.Fatalf("move %s --to %s with MERIDIAN_FAULT=%s: exit %d, Exit calls %v\nstdout %s\nstderr %s", kr, target, fault, code, exited, out.String(), errb.String())
	}
	return m[1]
}

// TestVerifyDefaultsToMove runs verify without --against: refused without a move, then against
// the target of a move stopped after its copy (for the move's keyrange and one inside it), and
// against the source of a move stopped after its flip.
func TestVerifyDefaultsToMove(t *testing.T) {
	_, env, _ := moveFixture(t)
	noMove := "no unfinished move under " + env["MERIDIAN_MOVES_PREFIX"] + " covers"
	if r := shardmgr(t, env, "verify", "20-2080"); r.code != ExitUsage || !strings.Contains(r.stderr, "--against <shard> is required: "+noMove+" 20-2080") {
		t.Fatalf("verify without a move: %+v", r)
	}

	id := moveWithFault(t, env, "20-2080", "us-east-2", "copy")
	r := shardmgr(t, env, "verify", "20-2080")
	if r.code != ExitOK || !strings.Contains(r.stdout, "keyrange 20-2080: us-east-1 (owner) against us-east-2\n--against us-east-2: the target of move "+id+" (keyrange 20-2080, us-east-1 → us-east-2, running)") ||
		!strings.Contains(r.stdout, "300 rows, the same on us-east-1 and us-east-2") {
		t.Fatalf("verify during the move: %+v", r)
	}
	r = shardmgr(t, env, "-o", "json", "verify", "2000000000000001-2000000000000081")
	var got verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitOK {
		t.Fatalf("verify inside the move's keyrange -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if !got.Equal || got.Move != id || got.Source != "us-east-1" || got.Target != "us-east-2" {
		t.Fatalf("verify inside the move's keyrange -o json: %+v", got)
	}
	var n int64
	for _, tr := range got.Tables {
		n += tr.TargetRows
	}
	if n != 128 {
		t.Errorf("verify inside the move's keyrange: %d rows on the target, want 128 (ksids 20..01 to 20..80)", n)
	}
	if r := shardmgr(t, env, "verify", "2080-21"); r.code != ExitUsage || !strings.Contains(r.stderr, noMove+" 2080-21") {
		t.Errorf("verify of a keyrange outside the move: %+v", r)
	}
	if r := shardmgr(t, env, "verify", "20-2080", "--against", "eu-west-1"); r.code != ExitUsage || !strings.Contains(r.stderr, "is in region eu-west") {
		t.Errorf("an explicit --against is not checked during the move: %+v", r)
	}
	if r := shardmgr(t, env, "move", "--abort", id, "--yes"); r.code != ExitOK {
		t.Fatalf("abort: %+v", r)
	}
	if r := shardmgr(t, env, "verify", "20-2080"); r.code != ExitUsage || !strings.Contains(r.stderr, noMove) {
		t.Fatalf("verify after the abort: %+v", r)
	}

	// After the flip the target owns the keyrange and the source still has its rows until cleanup.
	id = moveWithFault(t, env, "20-2080", "us-east-2", "flip")
	r = shardmgr(t, env, "verify", "20-2080")
	if r.code != ExitOK || !strings.Contains(r.stdout, "keyrange 20-2080: us-east-2 (owner) against us-east-1\n--against us-east-1: the source of move "+id) ||
		!strings.Contains(r.stdout, "300 rows, the same on us-east-2 and us-east-1") {
		t.Fatalf("verify after the flip: %+v", r)
	}
	if r := shardmgr(t, env, "move", "--resume", id); r.code != ExitOK {
		t.Fatalf("resume: %+v", r)
	}
	if r := shardmgr(t, env, "verify", "20-2080"); r.code != ExitUsage || !strings.Contains(r.stderr, noMove) {
		t.Fatalf("verify after the move: %+v", r)
	}
}
