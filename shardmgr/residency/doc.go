// Package residency proves, from the shards themselves, that every row lives where the topology says
// it must: in its owner's region, and there on the shard that owns its keyrange. Use it (through
// `shardmgr residency audit`) to show a compliance officer that residency holds, to prove that a pin
// finished, and to find rows that a bug or a hand-made fix left on the wrong shard.
//
// Audit reads every sharded table (schemas auth, core and ai, each with a primary key that starts
// with the bytea ksid) on every shard, concurrently with a bound and a deadline per shard, and does
// the work in SQL: one scan per table classifies each row with a CASE built from the topology (the
// shard's keyranges, its region's code, the relocation map, the keyranges in a move), counts the
// rows of each class, and, only when something is wrong, lists up to Options.Limit primary keys of
// each class. No row leaves the shard except those keys, as hex.
//
// The rules, each a Class, are in rules.go and docs/residency.md. A shard that cannot be read makes
// the report incomplete, and an incomplete report is never clean: Report.Verdict says which.
package residency
