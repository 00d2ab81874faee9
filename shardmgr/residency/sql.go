package residency

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// column is one primary-key column of a table.
type column struct {
	Name  string
	Bytea bool
}

// table is one sharded table as the shard's catalog describes it.
type table struct {
	Schema, Name string
	PK           []column
}

func (tb table) String() string { return tb.Schema + "." + tb.Name }

func (tb table) ident() string { return pgx.Identifier{tb.Schema, tb.Name}.Sanitize() }

// shardRules is what the SQL of one shard is built from: the shard's keyranges, its region, the
// keyranges of its region that are in a move on other shards, and the relocation map.
type shardRules struct {
	own    []shardkey.KeyRange
	inMove []shardkey.KeyRange
	code   shardkey.Region
	region string
	froms  [][]byte
	tos    [][]byte
	// ownFroms are the froms inside own.
	ownFroms [][]byte
	// codes and names are the topology's regions sorted by code, as the email directory sorts them.
	codes []int32
	names []string
}

// byteaLiteral is an 8-byte bound as a bytea literal. The bounds come from uint64s, never from
// input, so inlining them is safe, and it lets the planner see the ranges.
func byteaLiteral(v uint64) string { return fmt.Sprintf(`'\x%016x'::bytea`, v) }

// rangePredicate is true when col is inside one of the keyranges; "false" for none. Keyrange bounds
// are 8-byte big-endian values and ksid is exactly 8 bytes, so bytea order is keyspace order.
func rangePredicate(col string, krs []shardkey.KeyRange) string {
	if len(krs) == 0 {
		return "false"
	}
	parts := make([]string, 0, len(krs))
	for _, kr := range krs {
		var c []string
		if kr.Start != 0 {
			c = append(c, col+" >= "+byteaLiteral(kr.Start))
		}
		if kr.End != 0 {
			c = append(c, col+" < "+byteaLiteral(kr.End))
		}
		if len(c) == 0 {
			return "true" // the full keyspace
		}
		parts = append(parts, "("+strings.Join(c, " AND ")+")")
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

// Tables whose rows follow rules beyond placement.
const (
	usersTable  = "auth.users"
	claimsTable = "auth.email_claims"
)

// ownerKsid is the ksid a claim's user lives under now: the ksid inside the user ID, through the
// relocation map when there is one.
func (r shardRules) ownerKsid() string {
	if len(r.froms) == 0 {
		return "substring(x.user_id from 7 for 8)"
	}
	return "coalesce(rl.rt, substring(x.user_id from 7 for 8))"
}

func (r shardRules) join(tb table) string {
	if tb.String() == claimsTable && len(r.froms) > 0 {
		return " LEFT JOIN unnest(@froms::bytea[], @tos::bytea[]) AS rl(rf, rt) ON rl.rf = substring(x.user_id from 7 for 8)"
	}
	return ""
}

// rowRules are the table's rules beyond placement, in the order of Classes: each a predicate on
// the row (aliased x) that is true when the row breaks it.
func (r shardRules) rowRules(tb table) []struct {
	pred  string
	class Class
} {
	type rule = struct {
		pred  string
		class Class
	}
	switch tb.String() {
	case usersTable:
		return []rule{{"x.region IS DISTINCT FROM @region", RegionLabel}}
	case claimsTable:
		// The directory region is regions[first 64 bits of the hash mod n]. The 64 bits are
		// read as two non-negative 32-bit halves so that the modulo of the unsigned value can be
		// taken in bigint without overflow: (hi·2^32 + lo) mod n.
		n := len(r.codes)
		half := func(from int) string {
			return fmt.Sprintf("('x00000000' || encode(substring(x.email_hash from %d for 4), 'hex'))::bit(64)::bigint", from)
		}
		idx := fmt.Sprintf("(((%s %% %d) * (4294967296 %% %d) + %s %% %d) %% %d + 1)", half(1), n, n, half(5), n, n)
		return []rule{
			{fmt.Sprintf("(substring(x.ksid from 2 for 7) <> substring(x.email_hash from 1 for 7) OR get_byte(x.ksid, 0) <> (@codes::int[])[%s])", idx), ClaimMisplaced},
			{fmt.Sprintf("x.home_region IS DISTINCT FROM (@names::text[])[array_position(@codes::int[], get_byte(%s, 0))]", r.ownerKsid()), ClaimStale},
		}
	}
	return nil
}

// classExpr is the CASE that gives each row of tb (aliased x) its class, the empty string for a
// row that is where it must be. Its branches are the rules in the order of Classes.
func (r shardRules) classExpr(tb table) string {
	var b strings.Builder
	b.WriteString("CASE")
	if len(r.froms) > 0 {
		fmt.Fprintf(&b, " WHEN x.ksid = ANY(@froms::bytea[]) THEN '%s'", Relocated)
	}
	fmt.Fprintf(&b, " WHEN NOT %s THEN CASE WHEN get_byte(x.ksid, 0) <> %d THEN '%s'", rangePredicate("x.ksid", r.own), r.code, WrongRegion)
	if len(r.inMove) > 0 {
		fmt.Fprintf(&b, " WHEN %s THEN '%s'", rangePredicate("x.ksid", r.inMove), InMove)
	}
	fmt.Fprintf(&b, " ELSE '%s' END", WrongShard)
	for _, rr := range r.rowRules(tb) {
		fmt.Fprintf(&b, " WHEN %s THEN '%s'", rr.pred, rr.class)
	}
	b.WriteString(" ELSE '' END")
	return b.String()
}

// anyClass is true for a row that classExpr gives a class, except a relocated row inside the
// shard's own keyranges (relocatedSQL finds those through the primary key): the same rules as
// one disjunction, cheaper per row than the CASE and its text result.
func (r shardRules) anyClass(tb table) string {
	parts := []string{"NOT " + rangePredicate("x.ksid", r.own)}
	for _, rr := range r.rowRules(tb) {
		parts = append(parts, rr.pred)
	}
	return strings.Join(parts, " OR ")
}

// note is a short text shown with a listed key of tb, for the rules that read more than the key.
func (r shardRules) note(tb table) string {
	switch tb.String() {
	case usersTable:
		return "'region=' || x.region"
	case claimsTable:
		return "'home_region=' || x.home_region || ' owner=' || encode(" + r.ownerKsid() + ", 'hex')"
	}
	return "''"
}

// scanSQL counts tb's rows, and those in any class, in one scan. It is the audit's cost on a clean
// shard: a count(*) with a filter, no grouping (BenchmarkAudit compares it with count(*)).
func (r shardRules) scanSQL(tb table) string {
	return fmt.Sprintf("SELECT count(*), count(*) FILTER (WHERE %s) FROM %s x%s", r.anyClass(tb), tb.ident(), r.join(tb))
}

// relocatedSQL counts tb's rows under a relocated-from ksid inside the shard's own keyranges (one
// primary-key probe per ksid): a relocated row elsewhere is outside them, and the scan sees it.
func (r shardRules) relocatedSQL(tb table) string {
	return fmt.Sprintf("SELECT count(*) FROM %s x WHERE x.ksid = ANY(@ownfroms::bytea[])", tb.ident())
}

// countSQL counts tb's rows per class, for a table whose scan found rows in some class.
func (r shardRules) countSQL(tb table) string {
	return fmt.Sprintf("SELECT a.cls, count(*) FROM (SELECT %s AS cls FROM %s x%s) a GROUP BY a.cls", r.classExpr(tb), tb.ident(), r.join(tb))
}

// listSQL lists up to @limit primary keys of each violating class of tb: class, ksid (hex), the
// primary key (each column hex, joined by '|') and the note.
func (r shardRules) listSQL(tb table) string {
	keys := make([]string, len(tb.PK))
	for i, c := range tb.PK {
		id := "x." + pgx.Identifier{c.Name}.Sanitize()
		if c.Bytea {
			keys[i] = "encode(" + id + ", 'hex')"
		} else {
			keys[i] = "encode(convert_to(" + id + "::text, 'UTF8'), 'hex')"
		}
	}
	return fmt.Sprintf(`SELECT b.cls, b.k, b.key, b.note FROM (
  SELECT a.*, row_number() OVER (PARTITION BY a.cls ORDER BY a.key) AS rn FROM (
    SELECT %s AS cls, encode(x.ksid, 'hex') AS k, concat_ws('|', %s) AS key, %s AS note FROM %s x%s
  ) a WHERE a.cls <> '' AND a.cls <> '%s'
) b WHERE b.rn <= @limit ORDER BY b.cls, b.key`, r.classExpr(tb), strings.Join(keys, ", "), r.note(tb), tb.ident(), r.join(tb), InMove)
}

// args are the named arguments every query of the shard takes.
func (r shardRules) args(limit int) pgx.NamedArgs {
	return pgx.NamedArgs{"froms": r.froms, "tos": r.tos, "ownfroms": r.ownFroms, "region": r.region, "codes": r.codes, "names": r.names, "limit": limit}
}

// catalogSQL lists the tables of the sharded schemas with their primary-key columns in key order;
// a table without a primary key comes back with no columns.
const catalogSQL = `
SELECT n.nspname, c.relname,
       coalesce(array_agg(a.attname::text ORDER BY k.ord) FILTER (WHERE a.attname IS NOT NULL), '{}'),
       coalesce(array_agg(a.atttypid = 'bytea'::regtype ORDER BY k.ord) FILTER (WHERE a.attname IS NOT NULL), '{}')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
  LEFT JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
 WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
 GROUP BY n.nspname, c.relname
 ORDER BY n.nspname, c.relname`
