// Package topoedit holds the pure edits of the topology document that shardmgr makes outside a move:
// add a shard, remove a shard, split a keyrange on its shard. Each takes a document, checks the edit
// against it, and changes it only when the result validates; on any error the document is as it was.
//
// Use these inside topostore.Store.Modify, so the check runs again on the latest document at every
// attempt; the planner (shardmgr/plan) uses Split to predict the document after a plan.
package topoedit
