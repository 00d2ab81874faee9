package migrate_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/shardmgr/migrate"
)

// These tests exercise the schema itself (what the migrations build), on a migrated shard.

func ksidOf(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// entityID builds a 20-byte ID: 6 bytes of time, the owner's ksid, a kind byte, 5 bytes of entropy.
func entityID(ksid []byte, kind byte, seq byte) []byte {
	id := make([]byte, 0, 20)
	id = append(id, 0, 0, 1, 2, 3, 4)
	id = append(id, ksid...)
	id = append(id, kind, 0, 0, 0, 0, seq)
	return id
}

// migratedShard returns a connection to a fresh shard with every migration applied and one user,
// whose ksid and id are returned.
func migratedShard(t *testing.T) (conn *pgx.Conn, ksid, user []byte) {
	t.Helper()
	targets := shards(t, "schema")
	upOK(t, targets, migrate.Options{})
	conn = connect(t, targets[0].DSN)
	ksid = ksidOf(0x4000_0000_0000_0001)
	user = entityID(ksid, 'u', 1)
	if _, err := conn.Exec(context.Background(), `
INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
VALUES ($1, $2, 'Ada@Example.com', 'ada@example.com', 'Ada', 'client', 'eu-west')`, ksid, user); err != nil {
		t.Fatal(err)
	}
	return conn, ksid, user
}

func TestJobSearchRanksTitleAboveDescriptionAboveSkills(t *testing.T) {
	ctx := context.Background()
	conn, ksid, user := migratedShard(t)
	jobs := []struct {
		seq                byte
		title, description string
		skills             []string
	}{
		{1, "Kubernetes operator needed", "Help us run our cluster.", nil},
		{2, "Platform engineer", "You will write a Kubernetes operator.", nil},
		{3, "Platform engineer", "You will run our cluster.", []string{"kubernetes"}},
		{4, "Bookkeeper", "Monthly accounts.", []string{"excel"}},
	}
	for _, j := range jobs {
		if _, err := conn.Exec(ctx, `
INSERT INTO core.jobs (ksid, id, owner_id, title, description, skills)
VALUES ($1, $2, $3, $4, $5, coalesce($6, '{}'::text[]))`,
			ksid, entityID(ksid, 'j', j.seq), user, j.title, j.description, j.skills); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := conn.Query(ctx, `
SELECT title, description, ts_rank(search, q)
FROM core.jobs, websearch_to_tsquery('english', 'kubernetes') AS q
WHERE search @@ q
ORDER BY ts_rank(search, q) DESC`)
	if err != nil {
		t.Fatal(err)
	}
	type hit struct {
		title, description string
		rank               float32
	}
	hits, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hit, error) {
		var h hit
		err := r.Scan(&h.title, &h.description, &h.rank)
		return h, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 3 {
		t.Fatalf("search found %d jobs, want 3 (title, description and skills matches): %+v", len(hits), hits)
	}
	want := []string{jobs[0].description, jobs[1].description, jobs[2].description}
	for i, h := range hits {
		if h.description != want[i] {
			t.Errorf("rank %d: %+v, want the job described %q", i+1, h, want[i])
		}
	}
	if !(hits[0].rank > hits[1].rank && hits[1].rank > hits[2].rank) {
		t.Errorf("ranks not strictly ordered title > description > skills: %+v", hits)
	}
}

// TestSchemaConstraints checks that the constraints the docs promise are really there, by the
// SQLSTATE each bad write gets.
func TestSchemaConstraints(t *testing.T) {
	ctx := context.Background()
	conn, ksid, user := migratedShard(t)
	other := entityID(ksidOf(0x8000_0000_0000_0002), 'u', 2)
	job := entityID(ksidOf(0x8000_0000_0000_0002), 'j', 9)
	mustExec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustExec(`INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, rating) VALUES ($1, $2, $3, $4, $5, 5)`,
		ksid, entityID(ksid, 'r', 1), other, user, job)
	mustExec(`INSERT INTO core.audit_log (ksid, id, actor_id, action, ip) VALUES ($1, $2, $3, 'auth.login', '192.0.2.1')`,
		ksid, entityID(ksid, 'a', 1), user)

	const (
		checkViolation      = "23514"
		uniqueViolation     = "23505"
		foreignKeyViolation = "23503"
		restrictViolation   = "23001"
	)
	tests := []struct {
		name string
		sql  string
		args []any
		code string // "" means the statement must succeed
	}{
		{"ksid must be 8 bytes", `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, 'b@x.io', 'b@x.io', 'B', 'client', 'eu-west')`,
			[]any{[]byte{1, 2, 3}, entityID(ksid, 'u', 3)}, checkViolation},
		{"id must be 20 bytes", `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, 'b@x.io', 'b@x.io', 'B', 'client', 'eu-west')`,
			[]any{ksid, []byte("short")}, checkViolation},
		{"unknown role", `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, 'b@x.io', 'b@x.io', 'B', 'root', 'eu-west')`,
			[]any{ksid, entityID(ksid, 'u', 3)}, checkViolation},
		{"email unique on the shard", `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, 'ADA@example.com', 'ada@example.com', 'Ada 2', 'client', 'eu-west')`,
			[]any{ksid, entityID(ksid, 'u', 4)}, uniqueViolation},
		{"normalized email is lower case", `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, 'C@x.io', 'C@x.io', 'C', 'client', 'eu-west')`,
			[]any{ksid, entityID(ksid, 'u', 5)}, checkViolation},
		{"password must be an argon2id PHC string", `INSERT INTO auth.credentials (ksid, user_id, password_hash) VALUES ($1, $2, 'plaintext')`,
			[]any{ksid, user}, checkViolation},
		{"argon2id PHC string accepted", `INSERT INTO auth.credentials (ksid, user_id, password_hash) VALUES ($1, $2, '$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo')`,
			[]any{ksid, user}, ""},
		{"credentials need their user on the shard", `INSERT INTO auth.credentials (ksid, user_id, password_hash) VALUES ($1, $2, '$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA')`,
			[]any{ksid, entityID(ksid, 'u', 7)}, foreignKeyViolation},
		{"rating above 5", `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, rating) VALUES ($1, $2, $3, $4, $5, 6)`,
			[]any{ksid, entityID(ksid, 'r', 2), other, user, entityID(ksid, 'j', 8)}, checkViolation},
		{"review of oneself", `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, rating) VALUES ($1, $2, $3, $3, $4, 4)`,
			[]any{ksid, entityID(ksid, 'r', 3), user, job}, checkViolation},
		{"a review bound to a contract", `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, contract_id, status, rating) VALUES ($1, $2, $3, $4, $5, $6, 'verified', 4)`,
			[]any{ksid, entityID(ksid, 'r', 4), other, user, job, entityID(ksid, 'c', 1)}, ""},
		{"second review of the same contract", `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, contract_id, status, rating) VALUES ($1, $2, $3, $4, $5, $6, 'verified', 1)`,
			[]any{ksid, entityID(ksid, 'r', 5), other, user, job, entityID(ksid, 'c', 1)}, uniqueViolation},
		{"a verified review names its contract", `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, status, rating) VALUES ($1, $2, $3, $4, $5, 'verified', 1)`,
			[]any{ksid, entityID(ksid, 'r', 6), other, user, job}, checkViolation},
		{"budget min above max", `INSERT INTO core.jobs (ksid, id, owner_id, title, budget_min, budget_max) VALUES ($1, $2, $3, 'T', 100, 50)`,
			[]any{ksid, entityID(ksid, 'j', 1), user}, checkViolation},
		{"open budget allowed", `INSERT INTO core.jobs (ksid, id, owner_id, title, budget_min) VALUES ($1, $2, $3, 'T', 100)`,
			[]any{ksid, entityID(ksid, 'j', 2), user}, ""},
		{"job status outside the set", `INSERT INTO core.jobs (ksid, id, owner_id, title, status) VALUES ($1, $2, $3, 'T', 'draft')`,
			[]any{ksid, entityID(ksid, 'j', 3), user}, checkViolation},
		{"vector length must equal dims", `INSERT INTO ai.embeddings (ksid, entity_id, kind, model, dims, vector, content_hash) VALUES ($1, $2, 'profile', 'm', 3, '{1,2}', $3)`,
			[]any{ksid, user, make([]byte, 32)}, checkViolation},
		{"empty vector", `INSERT INTO ai.embeddings (ksid, entity_id, kind, model, dims, vector, content_hash) VALUES ($1, $2, 'profile', 'm', 1, '{}', $3)`,
			[]any{ksid, user, make([]byte, 32)}, checkViolation},
		{"two-dimensional vector", `INSERT INTO ai.embeddings (ksid, entity_id, kind, model, dims, vector, content_hash) VALUES ($1, $2, 'profile', 'm', 4, '{{1,2},{3,4}}', $3)`,
			[]any{ksid, user, make([]byte, 32)}, checkViolation},
		{"vector with a NULL", `INSERT INTO ai.embeddings (ksid, entity_id, kind, model, dims, vector, content_hash) VALUES ($1, $2, 'profile', 'm', 2, '{1,NULL}', $3)`,
			[]any{ksid, user, make([]byte, 32)}, checkViolation},
		{"well-formed vector", `INSERT INTO ai.embeddings (ksid, entity_id, kind, model, dims, vector, content_hash) VALUES ($1, $2, 'profile', 'm', 3, '{0.1,0.2,0.3}', $3)`,
			[]any{ksid, user, make([]byte, 32)}, ""},
		{"audit log rejects UPDATE", `UPDATE core.audit_log SET action = 'auth.logout' WHERE ksid = $1`,
			[]any{ksid}, restrictViolation},
		{"audit log allows DELETE (move cleanup)", `DELETE FROM core.audit_log WHERE ksid = $1`,
			[]any{ksid}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := conn.Exec(ctx, tc.sql, tc.args...)
			var pgErr *pgconn.PgError
			switch {
			case tc.code == "" && err != nil:
				t.Errorf("got %v, want success", err)
			case tc.code != "" && (!errors.As(err, &pgErr) || pgErr.Code != tc.code):
				t.Errorf("got %v, want SQLSTATE %s", err, tc.code)
			}
		})
	}
}

func TestUpdatedAtAndCascade(t *testing.T) {
	ctx := context.Background()
	conn, ksid, user := migratedShard(t)
	if _, err := conn.Exec(ctx, `UPDATE auth.users SET created_at = created_at - interval '1 hour', updated_at = created_at - interval '1 hour' WHERE ksid = $1`, ksid); err != nil {
		t.Fatal(err)
	}
	var bumped bool
	if err := conn.QueryRow(ctx, `SELECT updated_at > created_at FROM auth.users WHERE ksid = $1 AND id = $2`, ksid, user).Scan(&bumped); err != nil {
		t.Fatal(err)
	}
	if !bumped {
		t.Error("updated_at was not set by the trigger on UPDATE")
	}

	// Erasing a user removes what the user owns on the shard.
	if _, err := conn.Exec(ctx, `INSERT INTO core.profiles (ksid, user_id, skills) VALUES ($1, $2, '{go}')`, ksid, user); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM auth.users WHERE ksid = $1 AND id = $2`, ksid, user); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM core.profiles WHERE ksid = $1`, ksid).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d profiles survive their user's deletion", left)
	}
}
