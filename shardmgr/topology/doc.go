// Package topology is Meridian's model of where data lives: regions, physical shards, the keyranges each
// shard owns and their states, and the relocation map of users moved across regions.
//
// A Topology is the one versioned document that the shard manager stores in Consul and that every router
// and API node holds in memory. Validate refuses any document that would break residency (a keyrange given
// to a shard outside the region its prefix names), leave part of a region's keyspace unowned, or give the
// same keyspace ID to two shards. Compile turns a valid document into a Table whose Lookup answers
// "which shard holds this keyspace ID" without allocating.
package topology
