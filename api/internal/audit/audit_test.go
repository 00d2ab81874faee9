package audit

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/migrate"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func shard(t *testing.T) *pgxpool.Pool {
	t.Helper()
	dsn := testenv.Postgres(t).NewDatabase(t)
	if _, err := migrate.Up(context.Background(), []migrate.Target{{Shard: "audit-test", DSN: dsn}}, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestRecordAndList(t *testing.T) {
	ctx := context.Background()
	db := shard(t)
	gen := shardkey.NewGenerator(nil, nil)
	k := shardkey.NewKeyspaceID(0x40, []byte("subject"))
	other := shardkey.NewKeyspaceID(0x40, []byte("someone else"))
	actor, _ := gen.New(shardkey.KindUser, k)
	at := time.Now().Add(-time.Hour).Truncate(time.Microsecond).UTC()

	events := []Event{
		{KSID: k, ActorID: actor, Action: ActionRegister, Target: actor.String(), IP: netip.MustParseAddr("203.0.113.5"),
			UserAgent: "curl/8", Details: map[string]any{"role": "client"}, At: at},
		// No actor, IPv4-mapped IPv6 (stored as IPv4), an overlong, invalid-UTF-8 user agent, no time.
		{KSID: k, Action: ActionLoginFailed, IP: netip.MustParseAddr("::ffff:198.51.100.7"), UserAgent: strings.Repeat("é", 600) + "\xff"},
		{KSID: other, Action: ActionLogin},
	}
	for i, e := range events {
		if i == 0 {
			e.ID, _ = gen.New(shardkey.KindAudit, k)
		}
		if err := Record(ctx, db, e); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	got, err := List(ctx, db, k, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d events for the subject, want 2 (the other user's stays apart)", len(got))
	}
	newest, oldest := got[0], got[1]
	if oldest.Action != ActionRegister || oldest.ActorID != actor || oldest.Target != actor.String() || !oldest.At.Equal(at) ||
		oldest.IP.String() != "203.0.113.5" || oldest.UserAgent != "curl/8" || oldest.Details["role"] != "client" || oldest.ID.Kind() != shardkey.KindAudit {
		t.Errorf("first event: %+v", oldest)
	}
	if newest.Action != ActionLoginFailed || !newest.ActorID.IsZero() || newest.IP.String() != "198.51.100.7" ||
		len([]rune(newest.UserAgent)) != MaxUserAgent || newest.ID.KeyspaceID() != k || newest.Details == nil {
		t.Errorf("second event: action %s actor %v ip %s ua %d", newest.Action, newest.ActorID, newest.IP, len([]rune(newest.UserAgent)))
	}

	// The trail is append-only: the table refuses updates.
	_, err = db.Exec(ctx, `UPDATE core.audit_log SET action = 'auth.nothing' WHERE ksid = $1`, k.Bytes())
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "23001" {
		t.Errorf("update of the audit log: %v", err)
	}
}

func TestRecordRefusesBadEvents(t *testing.T) {
	// These fail before any database work, so no database is needed.
	k := shardkey.NewKeyspaceID(0x20, []byte("x"))
	for name, e := range map[string]Event{
		"empty action":     {KSID: k},
		"upper case":       {KSID: k, Action: "Auth.Login"},
		"space":            {KSID: k, Action: "auth login"},
		"long action":      {KSID: k, Action: "a" + strings.Repeat("b", 64)},
		"long target":      {KSID: k, Action: ActionLogin, Target: strings.Repeat("t", MaxTarget+1)},
		"invalid target":   {KSID: k, Action: ActionLogin, Target: "\xff"},
		"unmarshalable":    {KSID: k, Action: ActionLogin, Details: map[string]any{"f": func() {}}},
		"leading digit":    {KSID: k, Action: "1auth"},
		"trailing newline": {KSID: k, Action: "auth.login\n"},
	} {
		if err := Record(context.Background(), failingDB{t}, e); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

type failingDB struct{ t *testing.T }

func (f failingDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	f.t.Error("a bad event reached the database")
	return pgconn.CommandTag{}, nil
}
