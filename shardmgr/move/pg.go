package move

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// ObjectPrefix starts the name of every replication object a move creates: the publication and
// the slot on the source, the subscription on the target (ObjectPrefix + move ID).
const ObjectPrefix = "meridian_move_"

// shardedSchemas are the schemas split by keyrange (migrations/, shardmgr/migrate's shard-key rule).
var shardedSchemas = []string{"auth", "core", "ai"}

func objectName(id string) string { return ObjectPrefix + id }

// bounds returns the keyrange as bytea bounds for the primary-key range: [lo, hi), hi nil when
// the range is unbounded above.
func bounds(kr shardkey.KeyRange) (lo, hi []byte) {
	lo = binary.BigEndian.AppendUint64(nil, kr.Start)
	if kr.End != 0 {
		hi = binary.BigEndian.AppendUint64(nil, kr.End)
	}
	return lo, hi
}

// rangeLiteral is the keyrange as a SQL condition with literals, for the publication's row filter
// (which takes no parameters).
func rangeLiteral(kr shardkey.KeyRange) string {
	lo, hi := bounds(kr)
	cond := fmt.Sprintf(`ksid >= '\x%s'::bytea`, hex.EncodeToString(lo))
	if hi != nil {
		cond += fmt.Sprintf(` AND ksid < '\x%s'::bytea`, hex.EncodeToString(hi))
	}
	return "(" + cond + ")"
}

// rangeArgs is the keyrange as a condition on $1 and $2 with its arguments.
func rangeArgs(kr shardkey.KeyRange) (string, []any) {
	lo, hi := bounds(kr)
	if hi == nil {
		return "ksid >= $1", []any{lo}
	}
	return "ksid >= $1 AND ksid < $2", []any{lo, hi}
}

// shardedTables lists the sharded tables of a database in an order safe for deleting a keyrange's
// rows: a table comes before every table it references, so no ON DELETE CASCADE fires and each
// batch touches one table.
func shardedTables(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, `
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1`, shardedSchemas)
	if err != nil {
		return nil, fmt.Errorf("listing sharded tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing sharded tables: %w", err)
	}
	rows, err = db.Query(ctx, `
SELECT format('%I.%I', cn.nspname, cc.relname), format('%I.%I', pn.nspname, pc.relname)
FROM pg_constraint k
JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
WHERE k.contype = 'f' AND cn.nspname = ANY($1)`, shardedSchemas)
	if err != nil {
		return nil, fmt.Errorf("listing foreign keys: %w", err)
	}
	refs := map[string][]string{} // child → parents
	type edge struct{ child, parent string }
	edges, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge, error) {
		var e edge
		err := r.Scan(&e.child, &e.parent)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing foreign keys: %w", err)
	}
	for _, e := range edges {
		if e.child != e.parent {
			refs[e.child] = append(refs[e.child], e.parent)
		}
	}
	// Reverse topological order: emit a table once every table referencing it has been emitted.
	referencedBy := map[string]int{}
	for _, ps := range refs {
		for _, p := range ps {
			referencedBy[p]++
		}
	}
	var out []string
	done := map[string]bool{}
	for len(out) < len(names) {
		progressed := false
		for _, n := range names {
			if done[n] || referencedBy[n] > 0 {
				continue
			}
			done[n] = true
			out = append(out, n)
			for _, p := range refs[n] {
				referencedBy[p]--
			}
			progressed = true
		}
		if !progressed { // a cycle of references: the rest in name order, cascades and all
			for _, n := range names {
				if !done[n] {
					done[n] = true
					out = append(out, n)
				}
			}
		}
	}
	return out, nil
}

// countRange counts each table's rows in the keyrange.
func countRange(ctx context.Context, db *pgxpool.Pool, tables []string, kr shardkey.KeyRange) (map[string]int64, error) {
	cond, args := rangeArgs(kr)
	out := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		if err := db.QueryRow(ctx, "SELECT count(*) FROM "+t+" WHERE "+cond, args...).Scan(&n); err != nil {
			return nil, fmt.Errorf("counting %s: %w", t, err)
		}
		out[t] = n
	}
	return out, nil
}

// deleteRange deletes the keyrange's rows from every table in batches: short transactions, each
// taking row locks on at most batch rows, with a pause between them so that vacuum and replicas
// keep up. It returns the rows deleted per table.
func deleteRange(ctx context.Context, db *pgxpool.Pool, tables []string, kr shardkey.KeyRange, batch int, pause time.Duration) (map[string]int64, error) {
	cond, args := rangeArgs(kr)
	out := map[string]int64{}
	for _, t := range tables {
		q := fmt.Sprintf("DELETE FROM %s WHERE ctid = ANY(ARRAY(SELECT ctid FROM %s WHERE %s LIMIT %d))", t, t, cond, batch)
		for {
			tag, err := db.Exec(ctx, q, args...)
			if err != nil {
				return out, fmt.Errorf("deleting the keyrange from %s: %w", t, err)
			}
			out[t] += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				break
			}
			if err := sleep(ctx, pause); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// Leftover is one replication object left by a move.
type Leftover struct {
	Kind string `json:"kind"` // "slot", "publication", "subscription"
	Name string `json:"name"`
}

func (l Leftover) String() string { return l.Kind + " " + l.Name }

// Leftovers lists the replication objects of moves in db's database: slots named ObjectPrefix% and
// table-synchronisation slots (pg_<oid>_sync_<relid>_<sysid>) of this database (a source), and
// publications (a source) and subscriptions (a target) named ObjectPrefix%. A move that finished or was aborted leaves
// none; one in progress has its own.
func Leftovers(ctx context.Context, db *pgxpool.Pool) ([]Leftover, error) {
	rows, err := db.Query(ctx, `
SELECT 'slot', slot_name::text FROM pg_replication_slots
 WHERE database = current_database() AND (slot_name LIKE 'meridian\_move\_%' OR slot_name ~ '^pg_[0-9]+_sync_')
UNION ALL
SELECT 'publication', pubname::text FROM pg_publication WHERE pubname LIKE 'meridian\_move\_%'
UNION ALL
SELECT 'subscription', subname::text FROM pg_subscription
 WHERE subname LIKE 'meridian\_move\_%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("listing replication objects: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Leftover, error) {
		var l Leftover
		err := r.Scan(&l.Kind, &l.Name)
		return l, err
	})
}

// replication is what a move creates, named for it.
type replication struct {
	name      string // publication, slot and subscription
	src, dst  *pgxpool.Pool
	sourceDSN string // how the target's server reaches the source
}

func (r replication) publicationExists(ctx context.Context) (bool, error) {
	return exists(ctx, r.src, "SELECT true FROM pg_publication WHERE pubname = $1", r.name)
}

func (r replication) slotExists(ctx context.Context) (bool, error) {
	return exists(ctx, r.src, "SELECT true FROM pg_replication_slots WHERE slot_name = $1", r.name)
}

// subscription returns the subscription's oid, 0 when it does not exist.
func (r replication) subscription(ctx context.Context) (uint32, error) {
	var oid uint32
	err := r.dst.QueryRow(ctx, `SELECT oid FROM pg_subscription WHERE subname = $1
		AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, r.name).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("looking up subscription %s: %w", r.name, err)
	}
	return oid, nil
}

func exists(ctx context.Context, db *pgxpool.Pool, q string, args ...any) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, q, args...).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", strings.Fields(q)[3], err)
	}
	return ok, nil
}

// createPublication publishes every sharded table filtered to the keyrange, unless it exists.
func (r replication) createPublication(ctx context.Context, tables []string, kr shardkey.KeyRange) error {
	ok, err := r.publicationExists(ctx)
	if err != nil || ok {
		return err
	}
	filter := rangeLiteral(kr)
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = "TABLE " + t + " WHERE " + filter
	}
	q := fmt.Sprintf("CREATE PUBLICATION %s FOR %s WITH (publish_via_partition_root = true)",
		pgx.Identifier{r.name}.Sanitize(), strings.Join(parts, ", "))
	if _, err := r.src.Exec(ctx, q); err != nil {
		return fmt.Errorf("creating publication %s on the source: %w", r.name, err)
	}
	return nil
}

// createSlot creates the logical slot on the source, unless it exists. It is created apart from the
// subscription because CREATE SUBSCRIPTION with create_slot waits for every transaction of the
// publisher's cluster to end, its own included when both databases share a cluster: it would hang.
func (r replication) createSlot(ctx context.Context) error {
	ok, err := r.slotExists(ctx)
	if err != nil || ok {
		return err
	}
	if _, err := r.src.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", r.name); err != nil {
		return fmt.Errorf("creating replication slot %s on the source: %w", r.name, err)
	}
	return nil
}

// createSubscription subscribes the target to the publication through the existing slot, with an
// initial copy, unless the subscription exists. Its commits are synchronous on the target so that
// the slot's confirmed position follows what the target really holds without waiting for the
// target's WAL writer: the cutover's drain waits on it.
func (r replication) createSubscription(ctx context.Context) error {
	oid, err := r.subscription(ctx)
	if err != nil || oid != 0 {
		return err
	}
	q := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (create_slot = false, slot_name = %s, copy_data = true, synchronous_commit = 'on')",
		pgx.Identifier{r.name}.Sanitize(), quoteLiteral(r.sourceDSN), pgx.Identifier{r.name}.Sanitize(), quoteLiteral(r.name))
	if _, err := r.dst.Exec(ctx, q); err != nil {
		return fmt.Errorf("creating subscription %s on the target: %w", r.name, err)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// syncErrors counts the errors of the subscription's workers so far (PostgreSQL's cumulative
// statistics): a table-sync worker that fails (a row the target refuses) exits and is restarted every
// few seconds, so the copy would wait forever without this count.
func (r replication) syncErrors(ctx context.Context) (int64, error) {
	var n int64
	err := r.dst.QueryRow(ctx, `SELECT coalesce(sum(sync_error_count + apply_error_count), 0)::bigint
FROM pg_stat_subscription_stats WHERE subname = $1`, r.name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading the subscription's error count: %w", err)
	}
	return n, nil
}

// notReady lists the tables of the subscription not yet ready (state other than 'r').
func (r replication) notReady(ctx context.Context) ([]string, error) {
	rows, err := r.dst.Query(ctx, `
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_subscription_rel sr
JOIN pg_subscription s ON s.oid = sr.srsubid
JOIN pg_class c ON c.oid = sr.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND sr.srsubstate <> 'r'
ORDER BY 1`, r.name)
	if err != nil {
		return nil, fmt.Errorf("reading the subscription's table states: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// subscribedTables counts the tables the subscription copies.
func (r replication) subscribedTables(ctx context.Context) (int, error) {
	var n int
	err := r.dst.QueryRow(ctx, `SELECT count(*) FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid
WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, r.name).Scan(&n)
	return n, err
}

// copyProgress returns the rows copied so far per table of the initial sync that is running (from
// pg_stat_progress_copy of the target's table-sync workers).
func (r replication) copyProgress(ctx context.Context) (map[string]int64, error) {
	rows, err := r.dst.Query(ctx, `
SELECT format('%I.%I', n.nspname, c.relname), p.tuples_processed
FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.datname = current_database()`)
	if err != nil {
		return nil, fmt.Errorf("reading copy progress: %w", err)
	}
	out := map[string]int64{}
	defer rows.Close()
	for rows.Next() {
		var t string
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

// lag is how far the slot's confirmed position is behind the source's current WAL position, in bytes.
func (r replication) lag(ctx context.Context) (int64, error) {
	var lag *int64
	err := r.src.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
FROM pg_replication_slots WHERE slot_name = $1`, r.name).Scan(&lag)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("replication slot %s is gone from the source", r.name)
	}
	if err != nil {
		return 0, fmt.Errorf("reading replication lag: %w", err)
	}
	if lag == nil {
		return 1 << 62, nil // not confirmed anything yet
	}
	return max(*lag, 0), nil
}

// flushMark makes every transaction committed on the source so far durable in its WAL (a
// synchronous commit flushes everything before it, asynchronous commits of other sessions
// included: the walsender only sends flushed WAL) and returns a WAL position after all of them.
func (r replication) flushMark(ctx context.Context) (string, error) {
	tx, err := r.src.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, 'meridian_move', $1)", r.name); err != nil {
		return "", err
	}
	if err := tx.Commit(ctx); err != nil {
		return "", err
	}
	var lsn string
	if err := r.src.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", err
	}
	return lsn, nil
}

// confirmedPast reports whether the slot confirmed the target holds everything up to lsn.
func (r replication) confirmedPast(ctx context.Context, lsn string) (bool, error) {
	var ok *bool
	err := r.src.QueryRow(ctx, "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1", r.name, lsn).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("replication slot %s is gone from the source", r.name)
	}
	if err != nil {
		return false, err
	}
	return ok != nil && *ok, nil
}

// inFlight counts the source's client transactions that started before the instant given (the
// source's clock) and are still open: writes routed to the source before the freeze reached every
// node may still commit there.
func (r replication) inFlight(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := r.src.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND state <> 'idle' AND xact_start < $1`, before).Scan(&n)
	return n, err
}

// sourceNow is the source's clock.
func (r replication) sourceNow(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := r.src.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t)
	return t, err
}

// dropSubscription removes the subscription from the target without letting DROP SUBSCRIPTION
// reach the publisher (slot_name = NONE): the slots are dropped on the source by dropSlots.
func (r replication) dropSubscription(ctx context.Context) (uint32, error) {
	oid, err := r.subscription(ctx)
	if err != nil || oid == 0 {
		return oid, err
	}
	id := pgx.Identifier{r.name}.Sanitize()
	for _, q := range []string{
		"ALTER SUBSCRIPTION " + id + " DISABLE",
		"ALTER SUBSCRIPTION " + id + " SET (slot_name = NONE)",
		"DROP SUBSCRIPTION " + id,
	} {
		if _, err := r.dst.Exec(ctx, q); err != nil {
			return oid, fmt.Errorf("dropping subscription %s on the target (%s): %w", r.name, q, err)
		}
	}
	return oid, nil
}

// dropSlots drops the move's slot and the table-sync slots of subscription oid (0: none known) on
// the source, waiting for their walsenders to go (a disabled subscription's workers stop within
// moments) and ending them if they do not.
func (r replication) dropSlots(ctx context.Context, subOID uint32) error {
	names := []string{r.name}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := r.src.Query(ctx, `SELECT slot_name::text, active_pid FROM pg_replication_slots
WHERE slot_name = $1 OR ($2::oid <> 0 AND slot_name LIKE 'pg\_' || $2::oid::text || '\_sync\_%')`, names[0], subOID)
		if err != nil {
			return fmt.Errorf("listing the move's slots: %w", err)
		}
		type slot struct {
			name string
			pid  *int32
		}
		slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (slot, error) {
			var s slot
			err := r.Scan(&s.name, &s.pid)
			return s, err
		})
		if err != nil {
			return fmt.Errorf("listing the move's slots: %w", err)
		}
		if len(slots) == 0 {
			return nil
		}
		for _, s := range slots {
			if s.pid != nil {
				if time.Now().After(deadline) {
					return fmt.Errorf("replication slot %s stays active (pid %d)", s.name, *s.pid)
				}
				if time.Until(deadline) < 25*time.Second {
					_, _ = r.src.Exec(ctx, "SELECT pg_terminate_backend($1)", *s.pid)
				}
				continue
			}
			if _, err := r.src.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.name); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && (pgErr.Code == "55006" || pgErr.Code == "42704") { // in use, or gone meanwhile
					continue
				}
				return fmt.Errorf("dropping replication slot %s: %w", s.name, err)
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (r replication) dropPublication(ctx context.Context) error {
	if _, err := r.src.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{r.name}.Sanitize()); err != nil {
		return fmt.Errorf("dropping publication %s on the source: %w", r.name, err)
	}
	return nil
}

// dropAll removes every replication object of the move: subscription, slots, publication.
func (r replication) dropAll(ctx context.Context, knownSubOID uint32) (uint32, error) {
	oid, err := r.dropSubscription(ctx)
	if err != nil {
		return oid, err
	}
	if oid == 0 {
		oid = knownSubOID
	}
	if err := r.dropSlots(ctx, oid); err != nil {
		return oid, err
	}
	return oid, r.dropPublication(ctx)
}

// tableDiff reports the difference between two table lists.
func tableDiff(a, b []string) (onlyA, onlyB []string) {
	for _, t := range a {
		if !slices.Contains(b, t) {
			onlyA = append(onlyA, t)
		}
	}
	for _, t := range b {
		if !slices.Contains(a, t) {
			onlyB = append(onlyB, t)
		}
	}
	return onlyA, onlyB
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
