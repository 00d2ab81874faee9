// Package plan is the rebalancing planner: given the topology and what was measured per keyrange (rows,
// bytes, requests, the row-count median), it proposes an ordered list of steps, splits at row-count
// medians and moves of whole keyranges, that even out the shards of each region, and predicts the
// balance after them. It never proposes anything that crosses a region boundary: a keyrange's prefix
// names its region, and only shards of that region are considered.
//
// The planner is pure (no I/O, no clock, no randomness): the same input gives the same plan, ties
// broken by shard name and keyrange order, so plans can be reviewed, pinned in golden files
// (testdata/*.golden, rewritten with -update) and applied later. Package plan/collect measures the
// input; `shardmgr plan` prints a plan and `shardmgr rebalance --apply` runs one.
//
// How it decides, region by region (the thresholds are Options):
//
//  1. A region with a single shard has nothing to balance with.
//  2. Weight: a keyrange's share of its region's rows, averaged with its share of the region's requests
//     when requests were counted. A shard's weight is the sum of its keyranges'.
//  3. Split: a keyrange holding more than SplitShare of its region's rows or requests is split at its
//     row-count median, so its halves can be placed apart.
//  4. Move: while the heaviest shard exceeds the region's mean by more than MoveExcess, move to the
//     lightest shard the keyrange of the heaviest that leaves the pair most even, if that lowers the
//     heavier of the two; when no whole keyrange does, split the heaviest shard's biggest keyrange at
//     its median and move its upper half. Each accepted step strictly lowers the region's sum of
//     squared weights, so the loop ends; MaxSteps bounds it too.
//
// A half made by a split of this plan has no measured median, so it is not split again in the same
// plan: apply the plan, and plan again with fresh measurements to go further. Keyranges that are
// frozen or moving count toward their shard's weight but are never split or moved.
package plan
