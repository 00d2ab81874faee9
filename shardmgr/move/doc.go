// Package move moves a keyrange from one shard to another of the same region online, with
// PostgreSQL logical replication, while the keyrange keeps serving. Use it (through Runner, or the
// `shardmgr move` command) to rebalance shards; it is the machinery splits, rebalances and pins build on.
//
// A move is a state machine persisted in Consul KV (DefaultPrefix + ID, the Move record), written
// with check-and-set in a transaction that also checks that the runner's shard lock
// (shardmgr/shardlock) still holds. Its steps (Steps) are:
//
//	prepare  refuse what cannot move (another region, not one assignment, already moving, schemas
//	         that differ, a migration running: it holds the same lock); the assignment becomes moving
//	copy     publication over every sharded table filtered to the keyrange on the source, a logical
//	         slot created apart, a subscription on the target through it; initial sync of every table
//	catchup  replication lag under Config.CatchupLag
//	verify   source and target equal over the keyrange (Config.Verify); a difference stops the move,
//	         but a few rows that keep changing (hot rows) are left to the cutover (Move.Unsettled)
//	freeze   the assignment becomes frozen and every API node of the region holds that version:
//	         nodes hold the keyrange's reads and writes from then on (shardpool.ReadShard, WriteShard)
//	drain    transactions that reached the source before the freeze ended, and the target
//	         confirmed everything the source committed; the unsettled rows rechecked, a difference
//	         rolls the freeze back and fails the move before the flip
//	flip     the assignment is the target's, serving: held writes go on at the target
//	cleanup  once every node holds the flip and the source's open transactions ended, the
//	         replication objects dropped, then the moved rows deleted from the source in batches
//	done
//
// freeze, drain and flip are one cutover, bounded by Config.MaxPause: a try that would overrun it is
// rolled back to moving (held writes go on at the source), retried with back-off, and after
// Config.FreezeAttempts the move fails, resumable. Every step checks what really exists (the
// topology's state, the publication, the slot, the subscription) before acting, so Resume re-runs
// the step a crash interrupted; Abort rolls back anything before the flip and refuses after it.
// Each step is a fault point: Config.Fault stops the runner right after a step as a crash would.
//
// Runner.Pin is the same machinery for one user across regions (PinSteps, the Pin record under
// Config.PinPrefix, ResumePin, AbortPin): the user's rows copied transactionally to a shard of the
// target region under the new ksid, a frozen relocation entry holding the user's writes on the
// nodes of both regions for the cutover, the relocation flipped, the email directory pointed at the
// region, the source rows deleted, an audit record written. See docs/pin.md.
//
// See docs/moves.md.
package move
