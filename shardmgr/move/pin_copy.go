package move

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// sums checksums every table's rows of the user on both sides (source under from, target under to).
func (c pinCopy) sums(ctx context.Context, tables []pinTable) (src, dst map[string]sum, err error) {
	src, dst = map[string]sum{}, map[string]sum{}
	for _, t := range tables {
		var s, d sum
		if err := c.src.QueryRow(ctx, t.checksumSQL(), t.args(c.from.Bytes(), c.to, c.region)...).Scan(&s.Rows, &s.Sum); err != nil {
			return nil, nil, fmt.Errorf("checksumming %s on the source: %w", t.name, err)
		}
		if err := c.dst.QueryRow(ctx, t.checksumSQL(), t.args(c.to.Bytes(), c.to, c.region)...).Scan(&d.Rows, &d.Sum); err != nil {
			return nil, nil, fmt.Errorf("checksumming %s on the target: %w", t.name, err)
		}
		src[t.name], dst[t.name] = s, d
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

// copyTable replaces the user's rows of t on the target with those of one source snapshot, and
// checks the copy against that snapshot's checksum before committing. The target transaction runs
// with session_replication_role = replica, as a logical replication apply worker does: ordinary
// triggers (updated_at, audit_log's append-only rule) and foreign-key actions do not fire, so the
// copy keeps the source's values and deleting a parent row does not cascade into its children.
// It returns the rows copied.
func (c pinCopy) copyTable(ctx context.Context, t pinTable) (int64, error) {
	var data string
	var want sum
	err := pgx.BeginTxFunc(ctx, c.src, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, t.rowsSQL(), c.from.Bytes()).Scan(&data); err != nil {
			return err
		}
		return tx.QueryRow(ctx, t.checksumSQL(), t.args(c.from.Bytes(), c.to, c.region)...).Scan(&want.Rows, &want.Sum)
	})
	if err != nil {
		return 0, fmt.Errorf("reading the user's rows of %s on the source: %w", t.name, err)
	}
	err = pgx.BeginFunc(ctx, c.dst, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM "+t.name+" WHERE ksid = $1", c.to.Bytes()); err != nil {
			return err
		}
		if want.Rows > 0 {
			if _, err := tx.Exec(ctx, t.insertSQL(), t.args(data, c.to, c.region)...); err != nil {
				return err
			}
		}
		var got sum
		if err := tx.QueryRow(ctx, t.checksumSQL(), t.args(c.to.Bytes(), c.to, c.region)...).Scan(&got.Rows, &got.Sum); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%w: %s: the copy holds %d rows (checksum %s), the source snapshot %d (%s)", ErrDiffer, t.name, got.Rows, got.Sum, want.Rows, want.Sum)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrDiffer) {
			return 0, err
		}
		return 0, fmt.Errorf("copying the user's rows of %s to the target: %w", t.name, err)
	}
	return want.Rows, nil
}

// copyTables copies the given tables and returns the rows copied per table (tables with rows).
func (c pinCopy) copyTables(ctx context.Context, tables []pinTable) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range tables {
		n, err := c.copyTable(ctx, t)
		if err != nil {
			return out, err
		}
		if n > 0 {
			out[t.name] = n
		}
	}
	return out, nil
}

// oneKsid is the keyrange of exactly one ksid, for the keyrange helpers (countRange, deleteRange).
func oneKsid(k shardkey.KeyspaceID) shardkey.KeyRange {
	return shardkey.KeyRange{Start: uint64(k), End: uint64(k) + 1} // End 0 (k = max): unbounded, still only k
}
