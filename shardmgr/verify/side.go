package verify

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/migrate"
)

// sessionSQL fixes, for the transaction, every setting the text form of a value depends on, so that
// the same row gives the same text (hence md5) on two databases configured differently. search_path
// keeps format_type's type names and our unqualified functions alike on both sides.
const sessionSQL = `SELECT set_config('DateStyle', 'ISO, YMD', true),
       set_config('TimeZone', 'UTC', true),
       set_config('IntervalStyle', 'postgres', true),
       set_config('extra_float_digits', '1', true),
       set_config('bytea_output', 'hex', true),
       set_config('search_path', 'pg_catalog', true)`

// columnsQuery lists the columns of the given tables in column order, with their type, whether they
// are generated, and their position in the primary key (0 when not in it).
const columnsQuery = `
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       a.attgenerated <> '', coalesce(k.ord, 0)::int
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
  LEFT JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON k.attnum = a.attnum
 WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
 ORDER BY n.nspname, c.relname, a.attnum`

type column struct {
	name, typ string
	generated bool
}

// table is one sharded table as one side's catalog describes it.
type table struct {
	name  string // schema.table
	ident string // quoted for SQL
	cols  []column
	pk    []column // in key order; pk[0] is ksid
}

// rowText is the SQL of a row's text form: its stored (not generated) columns in the order given.
func rowText(cols []column) string {
	parts := make([]string, 0, len(cols))
	for _, c := range cols {
		if !c.generated {
			parts = append(parts, pgx.Identifier{c.name}.Sanitize())
		}
	}
	return "ROW(" + strings.Join(parts, ", ") + ")::text"
}

// keyText is the SQL of a row's key as Report lists it: ksid in hex, then the other primary-key
// columns, bytea in hex and others as text, joined by "|".
func keyText(pk []column) string {
	parts := make([]string, len(pk))
	for i, c := range pk {
		id := pgx.Identifier{c.name}.Sanitize()
		if c.typ == "bytea" {
			parts[i] = "encode(" + id + ", 'hex')"
		} else {
			parts[i] = id + "::text"
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "concat_ws('|', " + strings.Join(parts, ", ") + ")"
}

// sameColumns reports whether both sides store the same columns (by name, type and whether
// generated), whatever their order: rows are read by column name.
func sameColumns(a, b table) bool {
	if len(a.cols) != len(b.cols) {
		return false
	}
	m := make(map[string]column, len(a.cols))
	for _, c := range a.cols {
		m[c.name] = c
	}
	for _, c := range b.cols {
		if m[c.name] != c {
			return false
		}
	}
	return true
}

func describeColumns(t table) string {
	parts := make([]string, len(t.cols))
	for i, c := range t.cols {
		parts[i] = c.name + " " + c.typ
		if c.generated {
			parts[i] += " generated"
		}
	}
	return strings.Join(parts, ", ")
}

// side is one database in its comparison transaction.
type side struct {
	name   string // "source" or "target", for errors
	tx     pgx.Tx
	tables map[string]table
}

func open(ctx context.Context, pool *pgxpool.Pool, name string) (*side, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("%s: begin: %w", name, err)
	}
	s := &side{name: name, tx: tx}
	if _, err := tx.Exec(ctx, sessionSQL); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("%s: session settings: %w", name, err)
	}
	if err := s.loadCatalog(ctx); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// close ends the read-only transaction; there is nothing to keep, so a failure to roll back (a
// cancelled ctx, a dead connection) only means pgx discards the connection.
func (s *side) close(ctx context.Context) {
	_ = s.tx.Rollback(context.WithoutCancel(ctx))
}

func (s *side) loadCatalog(ctx context.Context) error {
	rows, err := s.tx.Query(ctx, migrate.ShardKeyQuery)
	if err != nil {
		return fmt.Errorf("listing sharded tables: %w", err)
	}
	var schemas, names, problems []string
	for rows.Next() {
		var schema, name, first, replIdent string
		var isBytea bool
		if err := rows.Scan(&schema, &name, &first, &isBytea, &replIdent); err != nil {
			rows.Close()
			return fmt.Errorf("listing sharded tables: %w", err)
		}
		if first != "ksid" || !isBytea {
			problems = append(problems, schema+"."+name+": primary key does not start with the bytea ksid")
		}
		schemas, names = append(schemas, schema), append(names, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing sharded tables: %w", err)
	}
	if len(problems) > 0 {
		// A keyrange is a primary-key range only when ksid leads the key.
		return fmt.Errorf("%w: %s", migrate.ErrShardKey, strings.Join(problems, "; "))
	}
	s.tables = make(map[string]table, len(names))
	rows, err = s.tx.Query(ctx, columnsQuery, schemas, names)
	if err != nil {
		return fmt.Errorf("reading columns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var schema, name string
		var c column
		var pkPos int
		if err := rows.Scan(&schema, &name, &c.name, &c.typ, &c.generated, &pkPos); err != nil {
			return fmt.Errorf("reading columns: %w", err)
		}
		full := schema + "." + name
		t, ok := s.tables[full]
		if !ok {
			t = table{name: full, ident: pgx.Identifier{schema, name}.Sanitize()}
		}
		t.cols = append(t.cols, c)
		if pkPos > 0 {
			for len(t.pk) < pkPos {
				t.pk = append(t.pk, column{})
			}
			t.pk[pkPos-1] = c
		}
		s.tables[full] = t
	}
	return rows.Err()
}

// bound is a keyrange bound as the ksid column holds it: 8 big-endian bytes.
func bound(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// rangeWhere is the WHERE clause of rows with lo <= ksid < hi (no upper bound when hi is nil), its
// bounds as the first arguments.
func rangeWhere(lo, hi []byte) (string, []any) {
	if hi == nil {
		return "ksid >= $1", []any{lo}
	}
	return "ksid >= $1 AND ksid < $2", []any{lo, hi}
}

// krBounds returns kr's bounds as ksid values; hi is nil for an unbounded end.
func krBounds(kr shardkey.KeyRange) (lo, hi []byte) {
	lo = bound(kr.Start)
	if kr.End != 0 {
		hi = bound(kr.End)
	}
	return lo, hi
}

func (s *side) count(ctx context.Context, t table, kr shardkey.KeyRange) (int64, error) {
	where, args := rangeWhere(krBounds(kr))
	var n int64
	err := s.tx.QueryRow(ctx, "SELECT count(*) FROM "+t.ident+" WHERE "+where, args...).Scan(&n)
	return n, err
}
