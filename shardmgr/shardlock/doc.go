// Package shardlock is the one Consul session lock that every operation changing where data lives
// takes: schema migrations, moves, splits, shard add/remove, rebalance and pins. Take it with
// Acquire before changing shards or the topology, and stop as soon as Lost is closed.
//
// The lock is a Consul KV key (DefaultKey) acquired by a session with a TTL, renewed in the
// background. A holder that crashes loses the lock when its TTL runs out; Consul's lock-delay then
// keeps the key refused a few seconds more, so a holder that was only partitioned away has time to
// notice (Lost) and stop before a successor starts. The lock serialises; it does not by itself make
// writes safe against a holder that has not noticed yet: writes it protects are check-and-set, and
// writes in the same Consul transaction can add a check-session on the lock (Session) so that they
// fail unless the session still holds it. Fence is the key's LockIndex at acquisition, which grows
// with every holder.
package shardlock
