// Package topostore keeps Meridian's topology document in Consul KV and follows it.
//
// The topology is one JSON document under one key (DefaultKey). Store writes it only with
// check-and-set on the Consul ModifyIndex the writer read, and bumps the document's own Version by
// exactly one on every write, so two writers can never both win and every copy in service can be
// ordered without Consul.
//
// Watcher is what routers and API nodes run: a blocking-query loop that holds the last good
// document in memory (Current never calls Consul), hands each new version to subscribers, and
// writes it atomically to a disk copy. When Consul is unreachable at start the disk copy is served
// until Consul answers; when Consul goes away later, or the key is deleted or overwritten with a
// document that does not validate, the last good copy keeps serving. A document is taken only if it
// decodes, validates and is newer than the one in service, so a stale Consul server or a restored
// snapshot cannot move a node backwards.
//
// docs/topology-store.md describes the rules for operators.
package topostore
