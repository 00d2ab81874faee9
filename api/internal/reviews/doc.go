// Package reviews serves reviews of users and their rating statistics.
//
// A review lives on the REVIEWEE's shard (its ksid is the reviewee's, and so is the ksid inside the
// review's ID): the reads that matter — "reviews of X", the rating on X's profile — then touch one
// shard in X's home region. The reviewer and the job may live anywhere, so a write is answered by
// the reviewee's region (a node elsewhere replies 421 and the edge router replays the request there)
// and the job is read from its owner's shard, or from its owner's region through a peer call.
//
// Stats (count, average, distribution) are cached in the region's Redis and kept correct: every
// change invalidates the reviewee's entry after its commit, and a generation counter stops a reader
// that computed stats before the change from caching them after it. Redis is an accelerator only;
// when it fails, stats come from PostgreSQL and the failed invalidation is retried. See
// docs/reviews.md.
package reviews
