// Package fleet tells what a region's API nodes hold: the topology version each one routes with, as it
// publishes it in its Consul registration (service metadata "topology_version", written by the node
// after its shard pools applied that version), and whether Consul finds it passing.
//
// Use WaitApplied where a change to the topology is safe only once every node routes with it: a move's
// cutover freezes its keyrange (a topology write), waits until every node of the region holds that
// version, so that every write to the keyrange is held by the node that took it, and only then flips the
// keyrange to its new shard. Use Nodes to show or check a region's nodes.
//
// # Which nodes count
//
// Only passing nodes count, as only passing nodes get traffic: routers, and the API nodes of other
// regions, send to the passing instances of a region's service and to no other. A node that is not
// passing (its /readyz fails, its Consul agent is gone) is ignored: waiting for it could block a move on
// a machine that is down. A node that is passing but publishes no version (an older binary) counts as
// holding version 0, so the wait goes on until it publishes one or ctx ends: not knowing is not safe.
//
// A region with no passing node at all is done at once. That is safe: writes reach a region's shards
// only through its passing nodes, so with none there is nobody to hold a write and nobody to take one.
// When a node comes back it is passing only after its /readyz answers, which needs a topology applied.
//
// What it does not cover: a node that stopped passing while it held an older version, and passes again
// before its topology watcher brings it the newer one, is ignored by the wait and then gets traffic for a
// moment with the older version. The node's watcher and its Consul check recover from one partition
// together, so the window is short, but a cutover cannot rule it out from here; docs/fleet.md says more.
// Writers that are not API nodes (workers) publish no version and are not waited for.
//
// # No polling
//
// WaitApplied follows the service's health with Consul blocking queries: each answer comes when a
// registration or a check status changes (a node publishing a version is a registration change), and
// ctx bounds the wait. When Consul cannot be reached it retries with back-off until ctx ends.
//
// # Asking the nodes
//
// A node's registration reaches the waiter through its agent, the agent's sync to the servers, the
// catalog and the blocking query: most of a cutover's wait. So WaitApplied also asks every passing node
// that has not published the version yet, at its service address, on VersionPath (a long poll the node
// answers the moment its pools hold the version). A node is done when its registration or its own
// answer says so; both are the node's statement that its pools hold the version. The nodes waited for
// are still exactly Consul's passing set, and a node that cannot be asked (an older binary, a network
// the waiter does not reach) is waited for through its registration alone.
package fleet
