package cli

import (
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
		{[]string{"verify", "2010-2020"}, "--against <shard> is required"},
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
	if r.code != ExitOK || !strings.Contains(r.stdout, "EQUAL: 13 tables, 30 rows, the same on us-east-1 and us-east-2") {
		t.Fatalf("equal: %+v", r)
	}
	r = shardmgr(t, f.env, "-o", "json", "verify", "2010-2020", "--against", "us-east-2")
	var got verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitOK {
		t.Fatalf("equal -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if !got.Equal || got.Source != "us-east-1" || got.Target != "us-east-2" || got.KeyRange.String() != "2010-2020" || len(got.Tables) != 13 {
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
	if r.code != ExitError || !strings.Contains(r.stderr, "keyrange 2010-2020 differs between us-east-1 and us-east-2 in 1 of 13 tables: auth.users") {
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
