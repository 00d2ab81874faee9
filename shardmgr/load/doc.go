// Package load measures the request load on every keyrange, as the API nodes count it: each node
// counts the reads and writes it routes per keyrange and shard (shardpool.KeyRangeCounts) and exports
// them on /metrics as meridian_api_keyrange_requests_total{keyrange,shard,kind}. Collect finds every
// passing node of each region in Consul (shardmgr/fleet), scrapes it, and sums per keyrange and per
// node. The rebalance planner calls it to weigh keyranges by load besides rows and bytes.
//
// The counters are totals since each node started. A single Collect therefore says which keyranges took
// the most requests over the nodes' lifetimes; for a rate, Collect twice and take Later.Since(earlier),
// which subtracts node by node and treats a node whose counts went down (it restarted) as counting from
// zero, as Prometheus's rate() does.
//
// What it does not see: nodes that are not passing (they take no traffic now, but their past counts
// are missed), and counts of keyranges no longer in the topology (the parent of a split): those count in
// their node's total (Node.Counts) but not in any keyrange's. A node that cannot be scraped is listed
// with its error; the others are summed, so one bad node does not blind the planner, which decides
// whether a partial measure is good enough.
package load
