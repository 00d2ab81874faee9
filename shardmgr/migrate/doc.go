// Package migrate applies the schema migrations to every physical shard.
//
// Each shard is its own PostgreSQL database with its own record of what has been applied: the goose
// version table [VersionTable]. There is no global "schema version"; a fleet is up to date when
// every shard's record says so, which is what [Status] reports.
//
// [Up] walks all shards with bounded concurrency and keeps going past a failing shard, so one bad
// shard neither blocks the others nor hides their results; the failures come back per shard and
// joined in the returned error. Within a shard, migrations run in version order, each in its own
// transaction together with its version row, so a failure leaves the earlier ones applied and the
// failing one unrecorded. A PostgreSQL session advisory lock (goose's session locker, with a lock ID
// of our own) serialises concurrent runners on the same shard: the loser waits, then finds nothing
// left to do.
//
// After applying, Up checks the catalog for the invariant the online move machinery relies on: every
// table in the sharded schemas has a primary key whose first column is the bytea ksid. A migration
// that breaks it fails the run with [ErrShardKey] rather than surfacing at the next move.
//
// [Down] is deliberately narrow: one shard, an explicit target version, for an SRE who means it.
package migrate
