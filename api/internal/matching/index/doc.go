// Package index is the matching engine's in-memory vector index: an immutable snapshot of one region's
// vectors of one kind (profiles or jobs) in one embedding space, searched by cosine similarity
// without a lock while a refresher swaps in the next snapshot (Live). PostgreSQL has no pgvector
// here, so each API node holds its region's vectors in memory; docs/matching.md ("The index") has
// the measurements behind the choices below and the command that reproduces them.
//
// # Layout
//
// Items live in chunks of 256 positions, each field one contiguous slice: the sign bits of the unit
// vector (bit j set when dimension j is non-negative; 1,536 dimensions are 24 uint64 words, 192
// bytes), the int8 codes round(v/s) with s = max|v|/127 per vector (1,536 bytes and a float32
// scale), and the ID. At 1,536 dimensions that is about 1.8 KB per item, 179 MB per 100,000 items
// with the ID map. A float32 copy (6 KB per item, 614 MB per 100,000) is kept only with
// BuildOptions.KeepFloat, which serving does not need: see "Re-score".
//
// # Search
//
// A query is normalised, and coded the same two ways. The scan walks the allowed positions (the
// snapshot's live positions, ANDed word by word with the caller's Allow bitmap, 64 positions per
// word) and computes the Hamming distance of the sign bits with math/bits.OnesCount64 over the
// contiguous words, keeping the best Candidates (400 by default) in a bounded max-heap of keys
// that pack the distance above the position: an item is compared with the heap's worst key and
// enters only when it beats it, so the loop allocates nothing and is mostly loads, XORs and
// popcounts. The candidates are then re-scored with the int8 codes (an int32 dot product times both
// scales, the cosine within about 1e-3 of float32) and the best k returned, ties broken by position.
//
// # Re-score
//
// Measured at 100,000 × 1,536 on clustered synthetic embeddings with 400 candidates
// (BenchmarkRescore): recall@10 against an exact float32 scan is 0.983 re-scoring with int8 and
// 0.986 with float32, at the same latency (equal p50s in each of three runs, 3.4-6.0 ms), while
// float32 takes 4.4 times the memory (794 MB per 100k against 183 MB). Both clear the 0.97 goal, so
// the index re-scores with int8 and keeps no float32 unless asked. Most of the recall lost (0.014 of 0.017) is neighbours the sign-bit scan did not keep
// among its candidates, not the re-score.
//
// # Scan split
//
// SearchOptions.Workers splits the scan over goroutines, each with its own heap, merged before the
// re-score. By default the scan splits in two from 64k positions and runs on the caller's goroutine
// below. On this 2-core machine, shared with other work, a split took the p50 at 100,000 items from
// 4.6-5.7 ms to 3.5-5.0 ms (faster in each of five runs that interleaved the two) and at 1M from 54 ms
// to 43 ms; at 10,000 the scan is a fraction of a millisecond and the re-score dominates.
// The scan is bound by memory, not by the popcounts (192 bytes per item: its best time at 100,000
// items was 2.6 ms on one core, 7.3 GB/s), and two cores draw more from the memory bus than one. A
// split buys latency, not throughput: when every core is busy with queries it only adds a handoff.
//
// # Snapshots, positions and filters
//
// Build makes a snapshot; With derives the next one (upserts, deletes) copying only the chunks it
// writes, the alive bitmap and the ID map, and sharing the rest. An item keeps its position for the
// lineage of snapshots With derives: an upsert overwrites in place, new items are appended, a delete
// leaves an empty position. So a filter bitmap (Bitmap, or any bitset.BitSet by position) built for
// one snapshot stays right for its successors, except that it does not allow items added since.
// Compact renumbers, and bitmaps must then be rebuilt; Deleted says when it is worth it.
//
// Exact is the full scan that Search is measured against and that a shadow check of live queries
// can run on a sample: float32 with KeepFloat, otherwise over the int8 codes, which measures what the
// sign-bit stage loses (the only loss that counts, see "Re-score").
package index
