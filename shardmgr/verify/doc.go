// Package verify compares one keyrange's rows on two shards, table by table: row counts, a checksum,
// and the primary keys of the rows that differ or exist on one side only. It is Meridian's VDiff:
// `shardmgr verify` runs it for an SRE, and an online move runs the same [Compare] before its cutover,
// where any difference stops the move.
//
// Use [Compare] for a full comparison, [Recheck] to re-compare only what an earlier report found
// different (a move does that after catching up, since a comparison of live data sees writes still in
// flight), and [CountRows] for rows per table in a keyrange (the planner's measure).
//
// # What is compared
//
// Every table of the sharded schemas (auth, core, ai), as [migrate.ShardKeyQuery] finds them in each
// side's catalog. Each table's primary key starts with the bytea ksid, so a keyrange is a primary-key
// range: ksid >= start AND ksid < end (no upper bound for an unbounded end). A table present on one
// side only, or whose columns differ (by name and type), is a difference of its own, reported in
// [TableReport.Problem]. Generated columns are left out of the checksum: they are not copied but
// computed on each side from the columns that are compared.
//
// # How
//
// Each side runs in one REPEATABLE READ READ ONLY transaction, so each side is one snapshot across all
// tables. The session fixes every setting a value's text form depends on (DateStyle, TimeZone,
// IntervalStyle, extra_float_digits, bytea_output, search_path), so identical rows give identical
// text on two databases whatever their configuration.
//
// A table is walked in chunks of about [Options.ChunkRows] rows, split at ksid values read from the
// source, the same bounds applied to both sides. Per chunk each side returns, computed in SQL, the
// row count and two sums of 64-bit halves of md5(row text): an order-independent checksum, so neither
// side has to sort, and one that adds up across chunks into the table's checksum. Only a chunk whose
// count or sums differ is narrowed further: both sides stream (primary key, md5) ordered bytewise
// (COLLATE "C", so a text key orders alike whatever the databases' collations) and a merge lists the
// keys that differ or exist on one side only.
//
// A key is written as the ksid in hex, then the primary key's other columns, joined by "|": bytea in
// hex, other types in their text form ("2000000000000001|0a1b..."). [Recheck] reads rows back by that
// text.
//
// The source's snapshot is held for the whole comparison, which holds back vacuum on the source for as
// long; the chunks keep each query small, not the transaction short.
package verify
