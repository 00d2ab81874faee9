// Package reviews serves reviews of users and their rating statistics.
//
// A review is about a completed contract: each party reviews the other once per contract, and such a
// review is verified. Reviews from before contracts are unverified: listed, never counted. A review
// lives on the REVIEWEE's shard (its ksid is the reviewee's, and so is the ksid inside the review's
// ID): the reads that matter — "reviews of X", the rating on X's profile — then touch one shard in X's
// home region. A new review is answered by the reviewer's home node, which reads the reviewer's side
// of the contract on the reviewer's shard and writes the review on the reviewee's, through the
// reviewee's region's node (which checks the reviewee's side) when that is another region.
//
// Stats (count, average, distribution of verified reviews) are cached in the region's Redis and kept
// correct: every change invalidates the reviewee's entry after its commit, and a generation counter
// stops a reader that computed stats before the change from caching them after it. Redis is an
// accelerator only; when it fails, stats come from PostgreSQL and the failed invalidation is retried.
// See docs/reviews.md.
package reviews
