package move

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// A pin copies one user's rows, so it does not use logical replication (a publication, a slot and
// a subscription per user would cost more than the rows): each table's rows of the user are read
// on the source in one snapshot as JSON, written on the target in one transaction (delete the
// user's rows under the new ksid, insert the snapshot's with the ksid rewritten) and checked
// there against the source snapshot's checksum before the transaction commits. A copy is
// therefore idempotent and all-or-nothing per table, and a resumed pin simply copies again.

// usersTable is the table whose region column states the home region: a pin rewrites it.
const usersTable = "auth.users"

// pinTable is one sharded table as the catalog describes it.
type pinTable struct {
	name string   // schema.table, quoted
	cols []string // stored columns (not generated), in column order, quoted
	raw  []string // the same, unquoted
}

// pinTables lists the stored columns of every sharded table, in the order of tables.
func pinTables(ctx context.Context, db *pgxpool.Pool, tables []string) ([]pinTable, error) {
	rows, err := db.Query(ctx, `
SELECT format('%I.%I', n.nspname, c.relname), array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
GROUP BY 1`, shardedSchemas)
	if err != nil {
		return nil, fmt.Errorf("listing the sharded tables' columns: %w", err)
	}
	cols := map[string][]string{}
	for rows.Next() {
		var name string
		var cs []string
		if err := rows.Scan(&name, &cs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing the sharded tables' columns: %w", err)
		}
		cols[name] = cs
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the sharded tables' columns: %w", err)
	}
	out := make([]pinTable, 0, len(tables))
	for _, t := range tables {
		cs, ok := cols[t]
		if !ok || !containsStr(cs, "ksid") {
			return nil, fmt.Errorf("table %s has no ksid column", t)
		}
		pt := pinTable{name: t, raw: cs}
		for _, c := range cs {
			pt.cols = append(pt.cols, pgx.Identifier{c}.Sanitize())
		}
		out = append(out, pt)
	}
	return out, nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rewritesRegion reports whether the table has the region column a pin rewrites.
func (t pinTable) rewritesRegion() bool { return t.name == usersTable && containsStr(t.raw, "region") }

// exprs are the table's columns as the target stores them, over alias x: the ksid is $2 (the new
// one) and auth.users' region is $3 (the target region); every other column as it is.
func (t pinTable) exprs(alias string) []string {
	out := make([]string, len(t.cols))
	for i, c := range t.cols {
		switch {
		case t.raw[i] == "ksid":
			out[i] = "$2::bytea"
		case t.raw[i] == "region" && t.rewritesRegion():
			out[i] = "$3::text"
		default:
			out[i] = alias + "." + c
		}
	}
	return out
}

// args are a query's arguments: first ($1), the new ksid ($2) and, for a table whose region the
// pin rewrites, the target region ($3).
func (t pinTable) args(first any, to shardkey.KeyspaceID, region string) []any {
	if t.rewritesRegion() {
		return []any{first, to.Bytes(), region}
	}
	return []any{first, to.Bytes()}
}

// checksumSQL counts the rows of one ksid ($1) and checksums them as the target stores them
// (exprs): the same query on both sides compares a source's rows with their copies. The order
// is that of the row hashes, so no collation of either side takes part.
func (t pinTable) checksumSQL() string {
	return fmt.Sprintf(`SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') FROM (
  SELECT md5(row(%s)::text) AS h FROM %s x WHERE x.ksid = $1) s`, strings.Join(t.exprs("x"), ", "), t.name)
}

// rowsSQL reads the rows of one ksid ($1) as one JSON array.
func (t pinTable) rowsSQL() string {
	return fmt.Sprintf(`SELECT coalesce(json_agg(x), '[]')::text FROM (SELECT %s FROM %s WHERE ksid = $1) x`,
		strings.Join(t.cols, ", "), t.name)
}

// insertSQL writes the JSON array $1 under the new ksid $2.
func (t pinTable) insertSQL() string {
	return fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM json_populate_recordset(NULL::%s, $1::json) x`,
		t.name, strings.Join(t.cols, ", "), strings.Join(t.exprs("x"), ", "), t.name)
}

// sum is one table's rows of one ksid: how many and their checksum.
type sum struct {
	Rows int64
	Sum  string
}

// pinCopy copies one user's rows between two shards.
type pinCopy struct {
	src, dst *pgxpool.Pool
	from, to shardkey.KeyspaceID
	region   string // the target region, written into auth.users.region
}

// sumsOn checksums every table's rows under k on db, in one round trip.
func (c pinCopy) sumsOn(ctx context.Context, db *pgxpool.Pool, k shardkey.KeyspaceID, tables []pinTable) (map[string]sum, error) {
	b := &pgx.Batch{}
	for _, t := range tables {
		b.Queue(t.checksumSQL(), t.args(k.Bytes(), c.to, c.region)...)
	}
	br := db.SendBatch(ctx, b)
	out := make(map[string]sum, len(tables))
	for _, t := range tables {
		var s sum
		if err := br.QueryRow().Scan(&s.Rows, &s.Sum); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("checksumming %s: %w", t.name, err)
		}
		out[t.name] = s
	}
	return out, br.Close()
}

// sums checksums every table's rows of the user on both sides at once (source under from, target
// under to).
func (c pinCopy) sums(ctx context.Context, tables []pinTable) (src, dst map[string]sum, err error) {
	var wg sync.WaitGroup
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		src, serr = c.sumsOn(ctx, c.src, c.from, tables)
	}()
	dst, err = c.sumsOn(ctx, c.dst, c.to, tables)
	wg.Wait()
	if serr != nil {
		return nil, nil, fmt.Errorf("on the source: %w", serr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("on the target: %w", err)
	}
	return src, dst, nil
}

// differing returns the tables whose sums differ.
func differing(tables []pinTable, src, dst map[string]sum) []pinTable {
	var out []pinTable
	for _, t := range tables {
		if src[t.name] != dst[t.name] {
			out = append(out, t)
		}
	}
	return out
}

// copyTables replaces the user's rows of the given tables on the target with those of one source
// snapshot, and checks each table's copy against that snapshot's checksum before committing: one
// REPEATABLE READ read-only transaction on the source, one transaction on the target, each sent as
// one batch (a round trip, not one per statement, which matters inside the write pause). The target
// transaction runs with session_replication_role = replica, as a logical replication apply worker
// does: ordinary triggers (updated_at, audit_log's append-only rule) and foreign-key actions do not
// fire, so the copy keeps the source's values and deleting a parent row does not cascade into its
// children. It returns the rows copied per table (tables with rows).
func (c pinCopy) copyTables(ctx context.Context, tables []pinTable) (map[string]int64, error) {
	out := map[string]int64{}
	if len(tables) == 0 {
		return out, nil
	}
	data := make([]string, len(tables))
	want := make([]sum, len(tables))
	err := pgx.BeginTxFunc(ctx, c.src, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, t := range tables {
			b.Queue(t.rowsSQL(), c.from.Bytes())
			b.Queue(t.checksumSQL(), t.args(c.from.Bytes(), c.to, c.region)...)
		}
		br := tx.SendBatch(ctx, b)
		for i, t := range tables {
			if err := br.QueryRow().Scan(&data[i]); err != nil {
				_ = br.Close()
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if err := br.QueryRow().Scan(&want[i].Rows, &want[i].Sum); err != nil {
				_ = br.Close()
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
		return br.Close()
	})
	if err != nil {
		return out, fmt.Errorf("reading the user's rows on the source: %w", err)
	}
	var differ []string
	err = pgx.BeginFunc(ctx, c.dst, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue("SET LOCAL session_replication_role = replica")
		for i, t := range tables {
			b.Queue("DELETE FROM "+t.name+" WHERE ksid = $1", c.to.Bytes())
			if want[i].Rows > 0 {
				b.Queue(t.insertSQL(), t.args(data[i], c.to, c.region)...)
			}
			b.Queue(t.checksumSQL(), t.args(c.to.Bytes(), c.to, c.region)...)
		}
		br := tx.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return err
		}
		for i, t := range tables {
			if _, err := br.Exec(); err != nil {
				_ = br.Close()
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if want[i].Rows > 0 {
				if _, err := br.Exec(); err != nil {
					_ = br.Close()
					return fmt.Errorf("%s: %w", t.name, err)
				}
			}
			var got sum
			if err := br.QueryRow().Scan(&got.Rows, &got.Sum); err != nil {
				_ = br.Close()
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if got != want[i] {
				differ = append(differ, fmt.Sprintf("%s: the copy holds %d rows (checksum %s), the source snapshot %d (%s)", t.name, got.Rows, got.Sum, want[i].Rows, want[i].Sum))
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		if len(differ) > 0 {
			return fmt.Errorf("%w: %s", ErrDiffer, strings.Join(differ, "; "))
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrDiffer) {
			return out, err
		}
		return out, fmt.Errorf("copying the user's rows to the target: %w", err)
	}
	for i, t := range tables {
		if want[i].Rows > 0 {
			out[t.name] = want[i].Rows
		}
	}
	return out, nil
}

// oneKsid is the keyrange of exactly one ksid, for the keyrange helpers (countRange, deleteRange).
func oneKsid(k shardkey.KeyspaceID) shardkey.KeyRange {
	return shardkey.KeyRange{Start: uint64(k), End: uint64(k) + 1} // End 0 (k = max): unbounded, still only k
}
