package verify_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/verify"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pair is two shard databases with every migration applied. The target's database defaults differ
// from the source's in every setting a value's text form depends on, so equal rows must compare
// equal despite them.
type pair struct {
	src, tgt       *pgxpool.Pool
	srcDSN, tgtDSN string
}

func newPair(t testing.TB) pair {
	t.Helper()
	pg := testenv.Postgres(t)
	p := pair{srcDSN: pg.NewDatabase(t), tgtDSN: pg.NewDatabase(t)}
	ctx := context.Background()
	if _, err := migrate.Up(ctx, []migrate.Target{{Shard: "source", DSN: p.srcDSN}, {Shard: "target", DSN: p.tgtDSN}}, migrate.Options{Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(p.tgtDSN)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, p.tgtDSN)
	if err != nil {
		t.Fatal(err)
	}
	db := pgx.Identifier{cfg.Database}.Sanitize()
	for _, set := range []string{"TimeZone = 'Asia/Kolkata'", "DateStyle = 'SQL, DMY'", "IntervalStyle = 'sql_standard'", "extra_float_digits = -3", "bytea_output = 'escape'"} {
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+db+" SET "+set); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	p.src, p.tgt = pool(t, p.srcDSN), pool(t, p.tgtDSN)
	return p
}

func pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func exec(t testing.TB, p *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := p.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// ksid of user g in slot s: 0x20 (us-east), the slot byte, then g in 6 bytes. Slot s is keyrange
// 20ss-20(ss+1), so each scenario has a keyrange of its own.
func ksidHex(slot byte, g int) string { return fmt.Sprintf("20%02x%012x", slot, g) }

func slotRange(slot byte) shardkey.KeyRange {
	return shardkey.MustParseKeyRange(fmt.Sprintf("20%02x-20%02x", slot, slot+1))
}

// seedSQL inserts users $2..$3 of slot $1 with a row in seven tables each (two jobs), every value
// fixed, so that the same call on two databases writes the same rows.
const seedSQL = `
WITH g AS (
  SELECT g, decode('20' || lpad(to_hex($1::int), 2, '0') || lpad(to_hex(g), 12, '0'), 'hex') AS ksid,
         decode(lpad(to_hex($1::int), 2, '0') || lpad(to_hex(g), 38, '0'), 'hex') AS uid,
         timestamptz '2024-01-02 03:04:05.123456+00' + g * interval '1 minute' AS ts
    FROM generate_series($2::int, $3::int) g
), u AS (
  INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region, created_at, updated_at)
  SELECT ksid, uid, 'u' || $1 || '.' || g || '@example.test', 'u' || $1 || '.' || g || '@example.test', 'User ' || g, 'client', 'us-east', ts, ts FROM g
  RETURNING 1
), o AS (
  INSERT INTO auth.oauth_identities (ksid, provider, subject, user_id, created_at)
  SELECT ksid, 'github', 'sub|' || g, uid, ts FROM g RETURNING 1
), j AS (
  INSERT INTO core.jobs (ksid, id, owner_id, title, description, skills, budget_min, budget_max, created_at, updated_at)
  SELECT ksid, decode(lpad(to_hex($1::int), 2, '0') || lpad(to_hex(g * 10 + n), 38, '0'), 'hex'), uid, 'Job ' || n || ' of ' || g,
         'Build "things", with commas, and \backslashes', ARRAY['go', 'sql'], 10.50, 99.99, ts, ts
    FROM g, generate_series(1, 2) n RETURNING 1
), s AS (
  INSERT INTO core.settings (ksid, user_id, notifications, created_at, updated_at)
  SELECT ksid, uid, jsonb_build_object('email', true, 'n', g), ts, ts FROM g RETURNING 1
), e AS (
  INSERT INTO ai.embeddings (ksid, entity_id, kind, model, dims, vector, content_hash, created_at, updated_at)
  SELECT ksid, uid, 'profile', 'm1', 3, ARRAY[0.1, g / 3.0, 1e-7]::real[], decode(md5(g::text) || md5(g::text), 'hex'), ts, ts FROM g RETURNING 1
), a AS (
  INSERT INTO core.audit_log (ksid, id, at, action, ip, details)
  SELECT ksid, uid, ts, 'auth.login', '10.0.0.1', jsonb_build_object('z', 1, 'a', 'b') FROM g RETURNING 1
)
SELECT (SELECT count(*) FROM u) + (SELECT count(*) FROM o) + (SELECT count(*) FROM j) + (SELECT count(*) FROM s) + (SELECT count(*) FROM e) + (SELECT count(*) FROM a)`

func seed(t testing.TB, p *pgxpool.Pool, slot byte, from, to int) {
	t.Helper()
	exec(t, p, seedSQL, int(slot), from, to)
}

// unseed removes everything user g of slot owns.
func unseed(t testing.TB, p *pgxpool.Pool, slot byte, g int) {
	t.Helper()
	k := ksidHex(slot, g)
	exec(t, p, `DELETE FROM auth.users WHERE ksid = decode($1, 'hex')`, k) // cascades
	exec(t, p, `DELETE FROM ai.embeddings WHERE ksid = decode($1, 'hex')`, k)
	exec(t, p, `DELETE FROM core.audit_log WHERE ksid = decode($1, 'hex')`, k)
}

func compare(t testing.TB, p pair, kr shardkey.KeyRange, opts verify.Options) verify.Report {
	t.Helper()
	rep, err := verify.Compare(context.Background(), p.src, p.tgt, kr, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func table(t testing.TB, rep verify.Report, name string) verify.TableReport {
	t.Helper()
	for _, tr := range rep.Tables {
		if tr.Table == name {
			return tr
		}
	}
	t.Fatalf("no %s in the report", name)
	return verify.TableReport{}
}

// onlyDiffering checks that exactly the named tables differ.
func onlyDiffering(t testing.TB, rep verify.Report, names ...string) {
	t.Helper()
	var got []string
	for _, tr := range rep.Differing() {
		got = append(got, tr.Table)
	}
	if !slices.Equal(got, names) {
		t.Fatalf("differing tables %v, want %v\n%+v", got, names, rep)
	}
}

func jobKey(slot byte, g, n int) string {
	return ksidHex(slot, g) + "|" + fmt.Sprintf("%02x%038x", slot, g*10+n)
}

func TestCompare(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()

	t.Run("equal copies", func(t *testing.T) {
		const slot = 1
		seed(t, p.src, slot, 1, 50)
		seed(t, p.tgt, slot, 1, 50)
		rep := compare(t, p, slotRange(slot), verify.Options{})
		if !rep.Equal() {
			t.Fatalf("equal copies differ: %+v", rep)
		}
		var want int
		if err := p.src.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname IN ('auth', 'core', 'ai')`).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if len(rep.Tables) != want {
			t.Fatalf("%d tables compared, want every sharded table (%d)", len(rep.Tables), want)
		}
		for name, rows := range map[string]int64{"auth.users": 50, "core.jobs": 100, "ai.embeddings": 50, "auth.credentials": 0} {
			tr := table(t, rep, name)
			if tr.SourceRows != rows || tr.TargetRows != rows || len(tr.SourceChecksum) != 16 {
				t.Errorf("%s: %+v, want %d rows each side", name, tr, rows)
			}
		}
		if c := table(t, rep, "auth.users").SourceChecksum; c == strings.Repeat("0", 16) {
			t.Errorf("checksum of 50 rows is zero")
		}
		// The checksum does not depend on where chunks are cut, even at one row per chunk (each
		// ksid holds two jobs, so the cut moves on to the next ksid).
		fine := compare(t, p, slotRange(slot), verify.Options{ChunkRows: 1})
		for i := range rep.Tables {
			if fine.Tables[i].SourceChecksum != rep.Tables[i].SourceChecksum || fine.Tables[i].SourceRows != rep.Tables[i].SourceRows {
				t.Errorf("%s: chunked %+v, whole %+v", rep.Tables[i].Table, fine.Tables[i], rep.Tables[i])
			}
		}
		counts, err := verify.CountRows(ctx, p.tgt, slotRange(slot))
		if err != nil {
			t.Fatal(err)
		}
		if counts["core.jobs"] != 100 || counts["auth.oauth_identities"] != 50 || len(counts) != want {
			t.Errorf("CountRows: %v", counts)
		}
	})

	t.Run("changed row", func(t *testing.T) {
		const slot = 2
		seed(t, p.src, slot, 1, 20)
		seed(t, p.tgt, slot, 1, 20)
		exec(t, p.tgt, `UPDATE core.jobs SET budget_max = 100 WHERE id = decode($1, 'hex')`, fmt.Sprintf("%02x%038x", slot, 7*10+2))
		rep := compare(t, p, slotRange(slot), verify.Options{})
		onlyDiffering(t, rep, "core.jobs")
		tr := table(t, rep, "core.jobs")
		if tr.SourceRows != 40 || tr.TargetRows != 40 || tr.SourceChecksum == tr.TargetChecksum || tr.DifferingRows != 1 || !slices.Equal(tr.Differing, []string{jobKey(slot, 7, 2)}) {
			t.Fatalf("core.jobs: %+v", tr)
		}
	})

	t.Run("row missing on the target", func(t *testing.T) {
		const slot = 3
		seed(t, p.src, slot, 1, 20)
		seed(t, p.tgt, slot, 1, 20)
		exec(t, p.tgt, `DELETE FROM auth.oauth_identities WHERE subject = 'sub|5' AND ksid = decode($1, 'hex')`, ksidHex(slot, 5))
		rep := compare(t, p, slotRange(slot), verify.Options{})
		onlyDiffering(t, rep, "auth.oauth_identities")
		tr := table(t, rep, "auth.oauth_identities")
		if tr.SourceRows != 20 || tr.TargetRows != 19 || !slices.Equal(tr.Differing, []string{ksidHex(slot, 5) + "|github|sub|5"}) {
			t.Fatalf("oauth_identities: %+v", tr)
		}
	})

	t.Run("extra row on the target", func(t *testing.T) {
		const slot = 4
		seed(t, p.src, slot, 1, 20)
		seed(t, p.tgt, slot, 1, 21)
		rep := compare(t, p, slotRange(slot), verify.Options{Limit: 3})
		onlyDiffering(t, rep, "ai.embeddings", "auth.oauth_identities", "auth.users", "core.audit_log", "core.jobs", "core.settings")
		users := table(t, rep, "auth.users")
		if users.SourceRows != 20 || users.TargetRows != 21 || !slices.Equal(users.Differing, []string{ksidHex(slot, 21) + "|" + fmt.Sprintf("%02x%038x", slot, 21)}) {
			t.Fatalf("auth.users: %+v", users)
		}
		if jobs := table(t, rep, "core.jobs"); jobs.DifferingRows != 2 || len(jobs.Differing) != 2 {
			t.Fatalf("core.jobs: %+v", jobs)
		}
	})

	t.Run("rows outside the keyrange are ignored", func(t *testing.T) {
		const slot = 5
		seed(t, p.src, slot, 1, 20)
		seed(t, p.tgt, slot, 1, 20)
		// The next slot's first ksid is the keyrange's end bound itself: outside, since the range
		// is half-open. The slot before ends just below the start.
		seed(t, p.tgt, slot+1, 0, 3)
		exec(t, p.tgt, `INSERT INTO core.audit_log (ksid, id, action) VALUES (decode($1, 'hex'), decode(repeat('ab', 20), 'hex'), 'x.y')`, ksidHex(slot-1, 1<<40))
		if rep := compare(t, p, slotRange(slot), verify.Options{}); !rep.Equal() {
			t.Fatalf("rows outside the keyrange made a difference: %+v", rep.Differing())
		}
		// An unbounded end takes them in.
		rep := compare(t, p, shardkey.MustParseKeyRange(fmt.Sprintf("20%02x-", slot)), verify.Options{})
		users := table(t, rep, "auth.users")
		if users.SourceRows != 20 || users.TargetRows != 24 || users.Differing[0] != ksidHex(slot+1, 0)+"|"+fmt.Sprintf("%02x%038x", slot+1, 0) {
			t.Fatalf("auth.users in %s-: %+v", fmt.Sprintf("20%02x", slot), users)
		}
	})

	t.Run("recheck clears a fixed difference", func(t *testing.T) {
		const slot = 7
		seed(t, p.src, slot, 1, 30)
		seed(t, p.tgt, slot, 1, 30)
		unseed(t, p.tgt, slot, 12)
		rep := compare(t, p, slotRange(slot), verify.Options{})
		if rep.Equal() || table(t, rep, "core.jobs").DifferingRows != 2 {
			t.Fatalf("first pass: %+v", rep)
		}
		again, err := verify.Recheck(ctx, p.src, p.tgt, slotRange(slot), rep)
		if err != nil {
			t.Fatal(err)
		}
		if jobs := table(t, again, "core.jobs"); again.Equal() || !jobs.Rechecked || !slices.Equal(jobs.Differing, []string{jobKey(slot, 12, 1), jobKey(slot, 12, 2)}) {
			t.Fatalf("recheck before the fix: %+v", jobs)
		}
		seed(t, p.tgt, slot, 12, 12)
		fixed, err := verify.Recheck(ctx, p.src, p.tgt, slotRange(slot), again)
		if err != nil {
			t.Fatal(err)
		}
		if !fixed.Equal() {
			t.Fatalf("recheck after the fix: %+v", fixed.Differing())
		}
		if _, err := verify.Recheck(ctx, p.src, p.tgt, slotRange(slot+1), rep); err == nil {
			t.Fatal("Recheck took a report of another keyrange")
		}
	})

	t.Run("recheck of a cut list compares the table again", func(t *testing.T) {
		const slot = 8
		seed(t, p.src, slot, 1, 10)
		seed(t, p.tgt, slot, 1, 10)
		exec(t, p.tgt, `UPDATE core.settings SET locale = 'fr' WHERE ksid >= decode($1, 'hex')`, ksidHex(slot, 4))
		rep := compare(t, p, slotRange(slot), verify.Options{Limit: 2})
		if s := table(t, rep, "core.settings"); s.DifferingRows != 7 || len(s.Differing) != 2 {
			t.Fatalf("settings: %+v", s)
		}
		exec(t, p.tgt, `DELETE FROM core.settings WHERE ksid >= decode($1, 'hex') AND ksid < decode($2, 'hex')`, ksidHex(slot, 4), ksidHex(slot+1, 0))
		exec(t, p.src, `DELETE FROM core.settings WHERE ksid >= decode($1, 'hex') AND ksid < decode($2, 'hex') AND ksid <> decode($3, 'hex')`, ksidHex(slot, 4), ksidHex(slot+1, 0), ksidHex(slot, 10))
		again, err := verify.Recheck(ctx, p.src, p.tgt, slotRange(slot), rep)
		if err != nil {
			t.Fatal(err)
		}
		// Only user 10's row differs now (on the source alone), and it was not listed: a recheck of
		// the two listed keys alone would have called the table equal.
		s := table(t, again, "core.settings")
		if s.Rechecked || s.DifferingRows != 1 || s.Differing[0] != ksidHex(slot, 10)+"|"+fmt.Sprintf("%02x%038x", slot, 10) {
			t.Fatalf("settings after recheck: %+v", s)
		}
	})

	t.Run("options", func(t *testing.T) {
		for _, o := range []verify.Options{{Limit: -1}, {ChunkRows: -1}, {Tables: []string{"users"}}} {
			if _, err := verify.Compare(ctx, p.src, p.tgt, slotRange(1), o); err == nil {
				t.Errorf("%+v accepted", o)
			}
		}
		if _, err := verify.Compare(ctx, p.src, p.tgt, slotRange(1), verify.Options{Tables: []string{"public.nope"}}); err == nil || !strings.Contains(err.Error(), "public.nope") {
			t.Errorf("unknown table: %v", err)
		}
		rep := compare(t, p, slotRange(2), verify.Options{Tables: []string{"core.jobs", "auth.users"}})
		if len(rep.Tables) != 2 || rep.Tables[0].Table != "auth.users" || rep.Tables[1].Table != "core.jobs" || rep.Tables[1].Equal() {
			t.Errorf("Tables: %+v", rep)
		}
	})
}

func TestSchemaDifferences(t *testing.T) {
	p := newPair(t)
	const slot = 1
	seed(t, p.src, slot, 1, 5)
	seed(t, p.tgt, slot, 1, 5)
	exec(t, p.tgt, `DROP TABLE ai.embeddings`)
	exec(t, p.tgt, `ALTER TABLE core.settings ADD COLUMN theme text`)
	exec(t, p.tgt, `CREATE TABLE core.extra (ksid bytea NOT NULL, id int NOT NULL, PRIMARY KEY (ksid, id))`)
	rep := compare(t, p, slotRange(slot), verify.Options{})
	onlyDiffering(t, rep, "ai.embeddings", "core.extra", "core.settings")
	if e := table(t, rep, "ai.embeddings"); e.Problem != "missing on the target" || e.SourceRows != 5 {
		t.Errorf("ai.embeddings: %+v", e)
	}
	if e := table(t, rep, "core.extra"); e.Problem != "missing on the source" {
		t.Errorf("core.extra: %+v", e)
	}
	if s := table(t, rep, "core.settings"); !strings.Contains(s.Problem, "columns differ") || !strings.Contains(s.Problem, "theme text") || s.SourceRows != 5 || s.TargetRows != 5 {
		t.Errorf("core.settings: %+v", s)
	}
	// A recheck compares such tables again, in full, and still finds them different.
	again, err := verify.Recheck(context.Background(), p.src, p.tgt, slotRange(slot), rep)
	if err != nil {
		t.Fatal(err)
	}
	onlyDiffering(t, again, "ai.embeddings", "core.extra", "core.settings")

	// A table whose primary key does not start with ksid cannot be compared by keyrange.
	exec(t, p.tgt, `CREATE TABLE core.bad (id int PRIMARY KEY)`)
	if _, err := verify.Compare(context.Background(), p.src, p.tgt, slotRange(slot), verify.Options{}); err == nil || !strings.Contains(err.Error(), "core.bad") {
		t.Fatalf("a table without a ksid key: %v", err)
	}
}

// TestChunking compares 20,000 rows in chunks of 1,000 with three differences scattered over them.
func TestChunking(t *testing.T) {
	p := newPair(t)
	const slot = 1
	for _, pl := range []*pgxpool.Pool{p.src, p.tgt} {
		exec(t, pl, `INSERT INTO core.audit_log (ksid, id, at, action, details)
			SELECT decode('2001' || lpad(to_hex(g / 3), 12, '0'), 'hex'), decode(lpad(to_hex(g), 40, '0'), 'hex'),
			       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', 'bulk.row', jsonb_build_object('g', g)
			  FROM generate_series(1, 20000) g`)
	}
	id := func(g int) string { return fmt.Sprintf("%040x", g) }
	key := func(g int) string { return ksidHex(slot, g/3) + "|" + id(g) }
	exec(t, p.tgt, `DELETE FROM core.audit_log WHERE id = decode($1, 'hex')`, id(4321))
	exec(t, p.tgt, `DELETE FROM core.audit_log WHERE id = decode($1, 'hex')`, id(15000))
	// audit_log rejects UPDATE: 15000 changes by a delete and an insert of other details.
	exec(t, p.tgt, `INSERT INTO core.audit_log (ksid, id, at, action, details)
		VALUES (decode($1, 'hex'), decode($2, 'hex'), timestamptz '2024-01-01 00:00:00+00' + 15000 * interval '1 second', 'bulk.row', '{"g": 0}')`,
		ksidHex(slot, 15000/3), id(15000))
	exec(t, p.tgt, `INSERT INTO core.audit_log (ksid, id, action) VALUES (decode($1, 'hex'), decode($2, 'hex'), 'bulk.extra')`, ksidHex(slot, 19999/3), id(30000))

	start := time.Now()
	rep := compare(t, p, slotRange(slot), verify.Options{ChunkRows: 1000, Tables: []string{"core.audit_log"}})
	t.Logf("compared 20000 rows in chunks of 1000 in %v", time.Since(start))
	a := rep.Tables[0]
	want := []string{key(4321), key(15000), ksidHex(slot, 19999/3) + "|" + id(30000)}
	if a.SourceRows != 20000 || a.TargetRows != 20000 || a.DifferingRows != 3 || !slices.Equal(a.Differing, want) {
		t.Fatalf("audit_log: %+v, want differing %v", a, want)
	}
	whole := compare(t, p, slotRange(slot), verify.Options{Tables: []string{"core.audit_log"}})
	if whole.Tables[0].SourceChecksum != a.SourceChecksum || whole.Tables[0].TargetChecksum != a.TargetChecksum || !slices.Equal(whole.Tables[0].Differing, want) {
		t.Fatalf("one chunk: %+v, chunks of 1000: %+v", whole.Tables[0], a)
	}
}
