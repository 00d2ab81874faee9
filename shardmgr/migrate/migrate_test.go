package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/migrations"
	"github.com/8thdegree/meridian/shardmgr/migrate"
)

// allVersions lists the versions of the embedded migrations, read from the files so that adding a
// migration does not need this test to change.
func allVersions(t testing.TB) []int64 {
	t.Helper()
	entries, err := fs.ReadDir(migrations.Files(), ".")
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%05d_", &v); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, v)
	}
	return out
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// recorded reads a shard's own record of applied versions, straight from the version table.
func recorded(t testing.TB, dsn string) []int64 {
	t.Helper()
	rows, err := connect(t, dsn).Query(context.Background(),
		`SELECT version_id FROM `+migrate.VersionTable+` WHERE is_applied AND version_id > 0 ORDER BY version_id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func shards(t testing.TB, names ...string) []migrate.Target {
	t.Helper()
	out := make([]migrate.Target, 0, len(names))
	for _, n := range names {
		out = append(out, migrate.Target{Shard: n, DSN: newShardDB(t)})
	}
	return out
}

func upOK(t testing.TB, targets []migrate.Target, opts migrate.Options) []migrate.ShardResult {
	t.Helper()
	res, err := migrate.Up(context.Background(), targets, opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return res
}

func TestUpAppliesAllAndRecordsPerShard(t *testing.T) {
	ctx := context.Background()
	want := allVersions(t)
	targets := shards(t, "s-40-", "s-80-c0", "s-c0-")

	res := upOK(t, targets, migrate.Options{Concurrency: 2})
	if len(res) != len(targets) {
		t.Fatalf("got %d results, want %d", len(res), len(targets))
	}
	for i, r := range res {
		if r.Shard != targets[i].Shard {
			t.Errorf("result %d is for shard %q, want %q (results follow target order)", i, r.Shard, targets[i].Shard)
		}
		if !slices.Equal(r.Applied, want) || r.Current != want[len(want)-1] || r.Err != nil {
			t.Errorf("first Up on %s = %+v, want applied %v, current %d", r.Shard, r, want, want[len(want)-1])
		}
		if got := recorded(t, targets[i].DSN); !slices.Equal(got, want) {
			t.Errorf("%s records %v, want %v", r.Shard, got, want)
		}
	}

	// Idempotent: nothing left to do.
	for _, r := range upOK(t, targets, migrate.Options{}) {
		if len(r.Applied) != 0 || r.Current != want[len(want)-1] {
			t.Errorf("second Up on %s = %+v, want nothing applied", r.Shard, r)
		}
	}

	st, err := migrate.Status(ctx, targets, migrate.Options{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, s := range st {
		if len(s.Pending) != 0 || s.Current != want[len(want)-1] || len(s.Applied) != len(want) {
			t.Errorf("Status %s = %+v, want all %d applied, none pending", s.Shard, s, len(want))
			continue
		}
		for j, a := range s.Applied {
			if a.Version != want[j] || !strings.HasPrefix(a.Source, fmt.Sprintf("%05d_", want[j])) || a.AppliedAt.IsZero() {
				t.Errorf("Status %s applied[%d] = %+v", s.Shard, j, a)
			}
		}
	}
}

func TestStatusOfFreshShardWritesNothing(t *testing.T) {
	ctx := context.Background()
	targets := shards(t, "fresh")
	st, err := migrate.Status(ctx, targets, migrate.Options{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if want := allVersions(t); st[0].Current != 0 || !slices.Equal(st[0].Pending, want) || len(st[0].Applied) != 0 {
		t.Errorf("Status = %+v, want current 0 and %v pending", st[0], want)
	}
	var exists bool
	if err := connect(t, targets[0].DSN).QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, migrate.VersionTable).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("Status created %s on a fresh shard", migrate.VersionTable)
	}
}

// TestConcurrentUpOnOneShard runs several runners at the same shard at once: the advisory lock must
// let exactly one apply each migration, and the others must find nothing to do.
func TestConcurrentUpOnOneShard(t *testing.T) {
	want := allVersions(t)
	target := shards(t, "contended")
	const runners = 4
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied []int64
		errs    []error
	)
	for range runners {
		wg.Go(func() {
			res, err := migrate.Up(context.Background(), target, migrate.Options{})
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			if err == nil {
				applied = append(applied, res[0].Applied...)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Up: %v", err)
	}
	slices.Sort(applied)
	if !slices.Equal(applied, want) {
		t.Errorf("runners applied %v between them, want each of %v exactly once", applied, want)
	}
	var rows int
	if err := connect(t, target[0].DSN).QueryRow(context.Background(),
		`SELECT count(*) FROM `+migrate.VersionTable+` WHERE version_id > 0`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(want) {
		t.Errorf("version table has %d rows, want %d", rows, len(want))
	}
}

// schemaFingerprint describes every column, constraint, index and trigger of the sharded schemas,
// so a Down/Up round trip can be shown to rebuild exactly the same schema.
func schemaFingerprint(t testing.TB, conn *pgx.Conn) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
SELECT format('%s.%s col %s %s notnull=%s default=%s generated=%s', table_schema, table_name, column_name,
              data_type, is_nullable, coalesce(column_default, ''), coalesce(generation_expression, ''))
FROM information_schema.columns WHERE table_schema IN ('auth', 'core', 'ai')
UNION ALL
SELECT format('%s con %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
FROM pg_constraint WHERE connamespace::regnamespace::text IN ('auth', 'core', 'ai')
UNION ALL
SELECT indexdef FROM pg_indexes WHERE schemaname IN ('auth', 'core', 'ai')
UNION ALL
SELECT pg_get_triggerdef(oid) FROM pg_trigger
WHERE NOT tgisinternal AND tgrelid::regclass::text ~ '^(auth|core|ai)\.'
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func TestDownThenUpRoundTrips(t *testing.T) {
	ctx := context.Background()
	want := allVersions(t)
	last := want[len(want)-1]
	targets := shards(t, "roundtrip")
	target := targets[0]
	conn := connect(t, target.DSN)
	upOK(t, targets, migrate.Options{})
	before := schemaFingerprint(t, conn)

	// Partway: only the first two migrations remain.
	if err := migrate.Down(ctx, target, 2, migrate.Options{}); err != nil {
		t.Fatalf("Down to 2: %v", err)
	}
	if got := recorded(t, target.DSN); !slices.Equal(got, want[:2]) {
		t.Errorf("after Down to 2 the shard records %v, want %v", got, want[:2])
	}
	var jobs, users bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('core.jobs') IS NOT NULL, to_regclass('auth.users') IS NOT NULL`).Scan(&jobs, &users); err != nil {
		t.Fatal(err)
	}
	if jobs || !users {
		t.Errorf("after Down to 2: core.jobs exists=%v (want false), auth.users exists=%v (want true)", jobs, users)
	}
	res := upOK(t, targets, migrate.Options{})
	if !slices.Equal(res[0].Applied, want[2:]) || res[0].Current != last {
		t.Errorf("Up after Down to 2 = %+v, want applied %v", res[0], want[2:])
	}

	// All the way: nothing of ours is left.
	if err := migrate.Down(ctx, target, 0, migrate.Options{}); err != nil {
		t.Fatalf("Down to 0: %v", err)
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname IN ('auth', 'core', 'ai')`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of the sharded schemas survive Down to 0", left)
	}
	if got := recorded(t, target.DSN); len(got) != 0 {
		t.Errorf("after Down to 0 the shard still records %v", got)
	}
	res = upOK(t, targets, migrate.Options{})
	if !slices.Equal(res[0].Applied, want) {
		t.Errorf("Up after Down to 0 applied %v, want %v", res[0].Applied, want)
	}
	if after := schemaFingerprint(t, conn); after != before {
		t.Errorf("schema after Down/Up differs from the original:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

func TestBrokenMigrationStopsThatShardOnly(t *testing.T) {
	ctx := context.Background()
	files := fstest.MapFS{
		"00001_one.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE one (ksid bytea PRIMARY KEY);\n-- +goose Down\nDROP TABLE one;\n")},
		"00002_two.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE two (ksid bytea PRIMARY KEY);\n-- +goose Down\nDROP TABLE two;\n")},
		"00003_bad.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE three (ksid bytea PRIMARY KEY);\nCREAT TABLE oops ();\n-- +goose Down\nDROP TABLE three;\n")},
		"00004_after.sql": {Data: []byte("-- +goose Up\nCREATE TABLE four (ksid bytea PRIMARY KEY);\n-- +goose Down\nDROP TABLE four;\n")},
	}
	targets := shards(t, "shard-with-bad-sql")
	res, err := migrate.Up(ctx, targets, migrate.Options{Files: files})
	if err == nil {
		t.Fatal("Up with a broken migration succeeded")
	}
	t.Logf("the SRE sees: %v", err)
	for _, want := range []string{"shard-with-bad-sql", "migration 3", "00003_bad.sql", "syntax error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	var se *migrate.ShardError
	if !errors.As(err, &se) || se.Shard != "shard-with-bad-sql" || se.Version != 3 || se.Op != "up" {
		t.Errorf("error %v: want a *ShardError for shard-with-bad-sql, version 3, op up; got %+v", err, se)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42601" {
		t.Errorf("error %v does not carry the PostgreSQL syntax_error (42601)", err)
	}
	if r := res[0]; !slices.Equal(r.Applied, []int64{1, 2}) || r.Current != 2 || r.Err == nil {
		t.Errorf("result = %+v, want applied [1 2], current 2 and the error", r)
	}
	if got := recorded(t, targets[0].DSN); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("shard records %v, want [1 2]: the broken one must not be marked applied", got)
	}
	// The broken migration ran in one transaction: its good first statement is rolled back too.
	var two, three bool
	if err := connect(t, targets[0].DSN).QueryRow(ctx, `SELECT to_regclass('two') IS NOT NULL, to_regclass('three') IS NOT NULL`).Scan(&two, &three); err != nil {
		t.Fatal(err)
	}
	if !two || three {
		t.Errorf("table two exists=%v (want true), table three exists=%v (want false)", two, three)
	}
}

// TestOneFailingShardDoesNotStopTheOthers breaks one shard by giving it a schema the first migration
// wants to create, and checks the rest of the fleet is migrated anyway.
func TestOneFailingShardDoesNotStopTheOthers(t *testing.T) {
	ctx := context.Background()
	want := allVersions(t)
	targets := shards(t, "a", "b", "c")
	if _, err := connect(t, targets[1].DSN).Exec(ctx, `CREATE SCHEMA auth`); err != nil {
		t.Fatal(err)
	}
	res, err := migrate.Up(ctx, targets, migrate.Options{})
	if err == nil {
		t.Fatal("Up succeeded although shard b cannot be migrated")
	}
	var se *migrate.ShardError
	if !errors.As(err, &se) || se.Shard != "b" || se.Version != 1 {
		t.Errorf("error %v: want a *ShardError for shard b, version 1", err)
	}
	for _, r := range res {
		switch r.Shard {
		case "b":
			if r.Err == nil || len(r.Applied) != 0 || r.Current != 0 {
				t.Errorf("shard b = %+v, want its error, nothing applied, current 0", r)
			}
		default:
			if r.Err != nil || !slices.Equal(r.Applied, want) {
				t.Errorf("shard %s = %+v, want all applied", r.Shard, r)
			}
		}
	}
	st, err := migrate.Status(ctx, targets, migrate.Options{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !slices.Equal(st[1].Pending, want) || len(st[0].Pending)+len(st[2].Pending) != 0 {
		t.Errorf("Status pending: a=%v b=%v c=%v, want only b pending %v", st[0].Pending, st[1].Pending, st[2].Pending, want)
	}
}

// TestEveryTableIsKeyedByKsid is the primary-key check, straight from the catalog: every table of the
// sharded schemas has a primary key whose first column is the bytea ksid, which is what makes a
// keyrange a primary-key range and a valid publication row filter.
func TestEveryTableIsKeyedByKsid(t *testing.T) {
	ctx := context.Background()
	targets := shards(t, "pk")
	upOK(t, targets, migrate.Options{})
	rows, err := connect(t, targets[0].DSN).Query(ctx, `
SELECT c.oid::regclass::text,
       i.indexrelid IS NOT NULL,
       coalesce(a.attname, ''),
       coalesce(format_type(a.atttypid, a.atttypmod), ''),
       coalesce(a.attnotnull, false)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE n.nspname IN ('auth', 'core', 'ai') AND c.relkind IN ('r', 'p')
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var table, first, typ string
		var hasPK, notNull bool
		if err := rows.Scan(&table, &hasPK, &first, &typ, &notNull); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, table)
		if !hasPK {
			t.Errorf("%s has no primary key", table)
			continue
		}
		if first != "ksid" || typ != "bytea" || !notNull {
			t.Errorf("%s: primary key starts with %s %s (not null=%v), want ksid bytea not null", table, first, typ, notNull)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// The documented tables, so that a table cannot silently disappear from the check.
	want := []string{
		"ai.embeddings", "ai.match_events", "ai.match_lists", "ai.models", "ai.outcomes",
		"auth.api_keys", "auth.credentials", "auth.email_claims", "auth.email_verifications", "auth.oauth_identities",
		"auth.refresh_token_families", "auth.refresh_tokens", "auth.users",
		"core.audit_log", "core.contract_refs", "core.contracts", "core.inbox", "core.job_proposals", "core.jobs", "core.outbox",
		"core.profiles", "core.proposals", "core.reviews", "core.settings",
	}
	if !slices.Equal(tables, want) {
		t.Errorf("sharded tables = %v, want %v", tables, want)
	}
}

func TestUpRejectsTablesNotKeyedByKsid(t *testing.T) {
	tests := []struct {
		name, ddl, want string
	}{
		{"no primary key", "CREATE TABLE core.loose (ksid bytea NOT NULL)", "core.loose has no primary key"},
		{"id first", "CREATE TABLE core.wrong (id bytea, ksid bytea, PRIMARY KEY (id, ksid))", "core.wrong: primary key starts with id"},
		{"ksid not bytea", "CREATE TABLE core.num (ksid bigint PRIMARY KEY)", "core.num: ksid is not bytea"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := fstest.MapFS{"00001_bad_key.sql": {Data: []byte(
				"-- +goose Up\nCREATE SCHEMA core;\n" + tc.ddl + ";\n-- +goose Down\nDROP SCHEMA core CASCADE;\n")}}
			_, err := migrate.Up(context.Background(), shards(t, "keys"), migrate.Options{Files: files})
			if !errors.Is(err, migrate.ErrShardKey) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Up = %v, want ErrShardKey mentioning %q", err, tc.want)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	valid := migrate.Target{Shard: "a", DSN: "postgres://x"}
	tests := []struct {
		name    string
		targets []migrate.Target
		opts    migrate.Options
		want    error
	}{
		{"empty shard", []migrate.Target{{DSN: "postgres://x"}}, migrate.Options{}, migrate.ErrInvalidTarget},
		{"empty dsn", []migrate.Target{{Shard: "a"}}, migrate.Options{}, migrate.ErrInvalidTarget},
		{"duplicate", []migrate.Target{valid, {Shard: "a", DSN: "postgres://y"}}, migrate.Options{}, migrate.ErrInvalidTarget},
		{"negative concurrency", []migrate.Target{valid}, migrate.Options{Concurrency: -1}, migrate.ErrInvalidOptions},
		{"negative lock timeout", []migrate.Target{valid}, migrate.Options{LockTimeout: -1}, migrate.ErrInvalidOptions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := migrate.Up(context.Background(), tc.targets, tc.opts)
			if !errors.Is(err, tc.want) || res != nil {
				t.Errorf("Up = %v, %v; want nil, %v", res, err, tc.want)
			}
			if _, err := migrate.Status(context.Background(), tc.targets, tc.opts); !errors.Is(err, tc.want) {
				t.Errorf("Status = %v, want %v", err, tc.want)
			}
			if len(tc.targets) == 1 {
				if err := migrate.Down(context.Background(), tc.targets[0], 0, tc.opts); !errors.Is(err, tc.want) {
					t.Errorf("Down = %v, want %v", err, tc.want)
				}
			}
		})
	}
	if err := migrate.Down(context.Background(), valid, -1, migrate.Options{}); !errors.Is(err, migrate.ErrInvalidOptions) {
		t.Errorf("Down to -1 = %v, want ErrInvalidOptions", err)
	}
}

// TestCanceledContextReportsEveryShard needs no server: a done context fails each shard before it
// connects, and every shard still gets a result that says so.
func TestCanceledContextReportsEveryShard(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	targets := []migrate.Target{
		{Shard: "a", DSN: "postgres://nobody@127.0.0.1:1/none"},
		{Shard: "b", DSN: "postgres://nobody@127.0.0.1:1/none"},
		{Shard: "c", DSN: "postgres://nobody@127.0.0.1:1/none"},
	}
	res, err := migrate.Up(ctx, targets, migrate.Options{Concurrency: 1})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Up = %v, want context.Canceled", err)
	}
	for i, r := range res {
		if r.Shard != targets[i].Shard || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("result %d = %+v, want shard %s canceled", i, r, targets[i].Shard)
		}
	}
}

func TestBadDSNNamesTheShardNotThePassword(t *testing.T) {
	_, err := migrate.Up(context.Background(),
		[]migrate.Target{{Shard: "s1", DSN: "postgres://u:hunter2@127.0.0.1:notaport/db"}}, migrate.Options{})
	if err == nil || !strings.Contains(err.Error(), "shard s1") {
		t.Fatalf("Up = %v, want an error naming shard s1", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
}

// BenchmarkUpNothingPending measures the cost of running Up against an up-to-date shard (the common
// case of a fleet-wide run) next to its floor: one connection and one query of the version table.
func BenchmarkUpNothingPending(b *testing.B) {
	targets := shards(b, "bench")
	upOK(b, targets, migrate.Options{})
	b.Run("baseline_connect_and_query", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			conn, err := pgx.Connect(context.Background(), targets[0].DSN)
			if err != nil {
				b.Fatal(err)
			}
			var v int64
			if err := conn.QueryRow(context.Background(), `SELECT max(version_id) FROM `+migrate.VersionTable).Scan(&v); err != nil {
				b.Fatal(err)
			}
			conn.Close(context.Background())
		}
	})
	b.Run("up", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := migrate.Up(context.Background(), targets, migrate.Options{})
			if err != nil || len(res[0].Applied) != 0 {
				b.Fatalf("Up = %+v, %v", res, err)
			}
		}
	})
}

// TestKeyrangePublicationAcceptsEveryTable builds what an online move builds, a publication of every
// sharded table filtered to a keyrange, and checks PostgreSQL still accepts updates and deletes on
// each table. It refuses both when the filter's column is not in the replica identity.
func TestKeyrangePublicationAcceptsEveryTable(t *testing.T) {
	ctx := context.Background()
	targets := shards(t, "pub")
	upOK(t, targets, migrate.Options{})
	conn := connect(t, targets[0].DSN)
	rows, err := conn.Query(ctx, `
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('auth', 'core', 'ai') AND c.relkind IN ('r', 'p')
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	clauses := make([]string, 0, len(tables))
	for _, tbl := range tables {
		clauses = append(clauses, tbl+` WHERE (ksid >= '\x40' AND ksid < '\x48')`)
	}
	if _, err := conn.Exec(ctx, `CREATE PUBLICATION move_40_48 FOR TABLE `+strings.Join(clauses, ", ")); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		// No row matches: PostgreSQL checks the replica identity when it plans the statement.
		if _, err := conn.Exec(ctx, `UPDATE `+tbl+` SET ksid = ksid WHERE false`); err != nil {
			t.Errorf("UPDATE %s under a keyrange publication: %v", tbl, err)
		}
		if _, err := conn.Exec(ctx, `DELETE FROM `+tbl+` WHERE false`); err != nil {
			t.Errorf("DELETE FROM %s under a keyrange publication: %v", tbl, err)
		}
	}
}
