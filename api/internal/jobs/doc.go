// Package jobs serves the marketplace's jobs: clients post them on their own shard, anyone reads them,
// their owners change and delete them, and everyone searches them.
//
// Reads and writes of one job go to the owner's shard, found from the keyspace ID inside the job's ID
// (or the caller's): no lookup, and a job homed in another region is answered with the replay hint.
//
// Search is the feature's cross-shard read. It fans out to every shard of the region with
// shardpool.Scatter (bounded concurrency, a deadline per shard, one query per shard), restricts every
// shard to the keyranges the topology gives it (so a keyrange being moved is never counted twice),
// merges the answers by (rank, id) and says honestly when a shard did not answer: partial results
// name the failed shards. A global search asks the other regions' nodes for their region's part
// through an internal route and merges again by the same key, so one opaque cursor pages consistently
// across shards and regions. docs/search.md tells the whole story.
//
// A job's lifecycle (open → in_progress with its first contract → completed; closed) is in
// lifecycle.go; the hiring feature and the matching engine hear of changes through Hooks. Matching
// jobs and freelancers is the matching engine's (api/internal/matching).
package jobs
