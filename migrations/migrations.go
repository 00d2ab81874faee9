// Package migrations holds the SQL migrations of the auth, core and ai schemas. Every physical shard
// gets the same migrations, in version order, through shardmgr/migrate; the files are embedded so the
// binaries that apply them need nothing on disk.
//
// Files are goose SQL migrations named NNNNN_what.sql, each with a working "-- +goose Down". See
// docs/schema.md for the conventions every table follows and how to add a migration.
package migrations

import (
	"embed"
	"io/fs"
)

// FS holds the migration files under sql/. Use [Files], which strips that prefix.
//
//go:embed sql/*.sql
var FS embed.FS

// Files returns the migration files at the root of the returned file system, the layout goose
// expects.
func Files() fs.FS {
	sub, err := fs.Sub(FS, "sql")
	if err != nil {
		// fs.Sub fails only for an invalid path, and "sql" is a constant valid one.
		panic("migrations: " + err.Error())
	}
	return sub
}
