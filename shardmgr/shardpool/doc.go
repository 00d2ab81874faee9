// Package shardpool keeps one pgx connection pool per physical shard, following the topology: pools are
// created for shards that appear or change their connection settings and retired for shards that leave.
// Route finds the pool that owns a keyspace ID with the compiled topology table (no I/O, no allocation in
// the lookup itself); Scatter runs a query on many shards with bounded concurrency and per-shard deadlines
// and reports which shards failed instead of failing the whole request.
package shardpool
