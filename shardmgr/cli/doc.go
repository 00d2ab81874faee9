// Package cli is the shardmgr command line: the SRE's view of and control over Meridian's topology and
// shards. cmd/shardmgr only calls Run, so tests drive the same commands in-process.
package cli
