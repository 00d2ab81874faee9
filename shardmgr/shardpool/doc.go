// Package shardpool keeps one pgx connection pool per physical shard, following the topology: pools are
// created for shards that appear or change their connection settings and retired for shards that leave.
// Route finds the pool that owns a keyspace ID with the compiled topology table (no I/O, no allocation in
// the lookup itself); Scatter runs a query on many shards with bounded concurrency and per-shard deadlines
// and reports which shards failed instead of failing the whole request.
//
// # Routing a region's reads and writes
//
// A process that serves one region's data (an API node, a worker of that region) routes with ReadShard
// and WriteShard instead of Route, and fans out with ReadRegion instead of Targets: they refuse data
// homed elsewhere with a *WrongRegionError (wrapping ErrWrongRegion, naming the region that holds it),
// and hold requests for a frozen keyrange. Their errors are sentinels (ErrNoTopology,
// topology.ErrNoShard, ErrWrongRegion, ErrFrozen, or the context's error); the API node turns them into
// HTTP answers once, at its edge.
//
// A keyrange is frozen (topology.Frozen, Routed.Frozen) during the cutover of a move: the source shard
// must take no more writes, and the target takes none until the topology is flipped. Reads wait too: the
// region's nodes apply the flip one after the other, and a read at the source through a node that has not
// yet would miss a write another node already took at the target. The hold is driven by the topology
// itself: every Apply that installs a new table wakes the requests held on the previous one (a channel
// closed when its snapshot is replaced), and each routes again, so a request goes on as soon as its
// keyrange serves again, at the new owner after a flip or at the same shard after an abort. A fan-out
// (ReadRegion) waits while any keyrange of its region is frozen, and gets the targets and the table of
// one version. A request gives up after its maxHold with ErrFrozen, or when its context ends. Nothing
// polls, and the path of a request to a keyrange that is not frozen is one atomic load and one table
// lookup.
//
// # Request counts per keyrange
//
// ReadShard and WriteShard count what they route, per keyrange and shard (KeyRangeCounts): the load the
// rebalance planner reads from every node (shardmgr/load). The count is one atomic add on a counter the
// lookup finds by index in the snapshot, each counter on a cache line of its own: no lock, no map probe,
// no allocation. A write is counted once, when it is routed to a shard that serves (after its hold, if
// it was held); refused and failed routings are not counted.
package shardpool
