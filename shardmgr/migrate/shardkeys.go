package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// ShardKeyQuery lists every table of the sharded schemas (auth, core, ai: those split by keyrange
// and moved between shards), ordered by schema and name, one row per table: schema, table, the
// first column of its primary key (empty when there is none), whether that column is bytea, and its
// replica identity (pg_class.relreplident: d, n, f or i). It reads pg_index directly rather than
// information_schema, which only shows tables the current role has privileges on.
//
// It is exported so that the packages that walk every sharded table (verify, move, the residency
// audit) find the same tables this package checks, with whichever driver they use.
const ShardKeyQuery = `
SELECT n.nspname, c.relname,
       coalesce(a.attname, ''),
       coalesce(a.atttypid = 'bytea'::regtype, false),
       c.relreplident::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE n.nspname IN ('auth', 'core', 'ai') AND c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname`

// checkShardKeys enforces what online moves rely on: a keyrange must be a primary-key range (the
// publication row filter is WHERE ksid >= .. AND ksid < .., and PostgreSQL only accepts a row filter
// on columns of the replica identity when updates and deletes are published), so every table needs
// a primary key led by the bytea ksid, and a replica identity other than NOTHING.
func checkShardKeys(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, ShardKeyQuery)
	if err != nil {
		return fmt.Errorf("check shard keys: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var schema, table, first, replIdent string
		var isBytea bool
		if err := rows.Scan(&schema, &table, &first, &isBytea, &replIdent); err != nil {
			return fmt.Errorf("check shard keys: %w", err)
		}
		name := schema + "." + table
		switch {
		case first == "":
			problems = append(problems, name+" has no primary key")
		case first != "ksid":
			problems = append(problems, fmt.Sprintf("%s: primary key starts with %s, not ksid", name, first))
		case !isBytea:
			problems = append(problems, name+": ksid is not bytea")
		}
		if replIdent == "n" {
			problems = append(problems, name+" has REPLICA IDENTITY NOTHING")
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check shard keys: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrShardKey, strings.Join(problems, "; "))
	}
	return nil
}
