// Package shardkey defines the values that decide where Meridian data lives:
// keyspace IDs (ksids), keyranges over them, home-region codes, and the
// entity IDs that clients see.
//
// A ksid is 64 bits: the top byte is the owner's home-region code and the low
// 56 bits a stable hash of the owner's identity, the layout of Vitess's region
// vindex. Because the region is the most significant byte, each region owns one
// contiguous keyrange ("20-21" for region 20), and any keyrange inside it can be
// given only to that region's shards: residency holds by construction.
//
// Entity IDs (users, jobs, reviews, ...) embed their owner's ksid, so a router
// or an API node finds the shard for any ID without a lookup, and they sort by
// creation time both as bytes and as text.
//
// The package is pure: no I/O, no logging, no flags, no package-level mutable
// state. deps_test.go enforces what it may import. The bit layouts and the
// reasons behind them are described in docs/keyspace.md.
package shardkey
