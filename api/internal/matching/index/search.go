package index

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/bits-and-blooms/bitset"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// DefaultCandidates is how many items the sign-bit scan passes to the re-score when
// SearchOptions.Candidates is zero.
const DefaultCandidates = 400

// splitMin is the number of positions from which Search splits the scan over two goroutines by
// default.
const splitMin = 64 * 1024

// Rescore says which vectors re-score the candidates.
type Rescore uint8

const (
	// RescoreInt8 re-scores with the int8 codes: the default, and what serving uses.
	RescoreInt8 Rescore = iota
	// RescoreFloat32 re-scores with the float32 vectors; an index built without KeepFloat uses
	// int8 instead.
	RescoreFloat32
)

// SearchOptions tunes one search. The zero value is the serving configuration.
type SearchOptions struct {
	// Candidates is how many items the sign-bit scan keeps for the re-score: DefaultCandidates when
	// zero, at least k.
	Candidates int
	// Allow, when not nil, restricts the search to the positions it has set (deleted positions are
	// excluded in any case). Bits past its length are not allowed.
	Allow *bitset.BitSet
	// Rescore picks the re-score vectors.
	Rescore Rescore
	// Workers is the number of goroutines the scan is split over. 0 picks 2 for indexes of 65,536
	// positions or more and 1 below (the package doc has the measurement). A node whose cores are
	// all busy with concurrent queries gains nothing from a split and may set 1.
	Workers int
}

// Hit is one result: the item, its position in the snapshot, and its cosine to the query as the
// re-score measured it, within [-1, 1].
type Hit struct {
	ID    shardkey.ID
	Pos   int
	Score float32
}

// query is a search's query in every form the scans use.
type query struct {
	unit  []float32
	code  []uint64
	q8    []int8
	scale float32
}

func (ix *Index) prepare(q []float32) (query, bool) {
	if ix == nil || len(ix.pos) == 0 || len(q) != ix.dims {
		return query{}, false
	}
	var ss float64
	for _, v := range q {
		ss += float64(v) * float64(v)
	}
	if ss == 0 || math.IsNaN(ss) || math.IsInf(ss, 0) {
		return query{}, false
	}
	qq := query{unit: make([]float32, ix.dims), code: make([]uint64, ix.words), q8: make([]int8, ix.dims)}
	normalize(qq.unit, q)
	signBits(qq.code, qq.unit)
	qq.scale = quantize(qq.q8, qq.unit)
	return qq, true
}

// Search returns the k items most similar to q, best first (ties by position): a scan of the sign
// bits by Hamming distance keeps the best opt.Candidates, which are re-scored and cut to k. It returns
// nil for k ≤ 0, an empty index, or a query that is zero, not finite or not of Dims() length.
func (ix *Index) Search(q []float32, k int, opt SearchOptions) []Hit {
	qq, ok := ix.prepare(q)
	if !ok || k <= 0 {
		return nil
	}
	c := opt.Candidates
	if c <= 0 {
		c = DefaultCandidates
	}
	c = max(c, k)
	workers := opt.Workers
	if workers <= 0 {
		workers = 1
		if ix.slots >= splitMin {
			workers = 2
		}
	}
	workers = min(workers, len(ix.chunks))
	var cand []uint64
	if workers <= 1 {
		cand = ix.scan(qq.code, opt.Allow, c, 0, len(ix.chunks), make([]uint64, 0, c))
	} else {
		parts := make([][]uint64, workers)
		var wg sync.WaitGroup
		for w := range workers {
			lo, hi := len(ix.chunks)*w/workers, len(ix.chunks)*(w+1)/workers
			wg.Add(1)
			go func() {
				defer wg.Done()
				parts[w] = ix.scan(qq.code, opt.Allow, c, lo, hi, make([]uint64, 0, c))
			}()
		}
		wg.Wait()
		cand = slices.Concat(parts...)
		if len(cand) > c {
			slices.Sort(cand) // keys order by distance, then position
			cand = cand[:c]
		}
	}

	float := opt.Rescore == RescoreFloat32 && ix.keepFloat
	hits := make([]Hit, len(cand))
	for i, key := range cand {
		p := int(uint32(key))
		ch, s := ix.chunks[p/chunkSize], p%chunkSize
		var score float32
		if float {
			score = dotF32(qq.unit, ch.f32[s*ix.dims:(s+1)*ix.dims])
		} else {
			score = float32(dotI8(qq.q8, ch.q8[s*ix.dims:(s+1)*ix.dims])) * qq.scale * ch.scale[s]
		}
		hits[i] = Hit{ID: ch.ids[s], Pos: p, Score: clampCos(score)}
	}
	slices.SortFunc(hits, byScore)
	return hits[:min(k, len(hits))]
}

// clampCos keeps a re-scored cosine within [-1, 1]: rounding in the int8 codes can carry an item's
// own vector to 1.002.
func clampCos(c float32) float32 { return min(max(c, -1), 1) }

func byScore(a, b Hit) int {
	if c := cmp.Compare(b.Score, a.Score); c != 0 {
		return c
	}
	return cmp.Compare(a.Pos, b.Pos)
}

// scan runs the Hamming scan over chunks [lo, hi) and returns up to c keys, each the distance in the
// high 32 bits and the position in the low 32, so that keys order by distance then position. h is
// a max-heap of the best keys so far: an item enters only when it beats the worst, which after the
// first few thousand items is rare, so the loop is mostly loads, XORs and popcounts.
func (ix *Index) scan(qc []uint64, allow *bitset.BitSet, c, lo, hi int, h []uint64) []uint64 {
	words := ix.words
	worst := uint64(math.MaxUint64)
	offer := func(key uint64) {
		if len(h) < c {
			h = append(h, key)
			siftUp(h, len(h)-1)
			if len(h) == c {
				worst = h[0]
			}
			return
		}
		h[0] = key
		siftDown(h)
		worst = h[0]
	}
	ix.blocks(allow, lo, hi, func(ch *chunk, slot0, pos0 int, mask uint64) {
		if mask == math.MaxUint64 {
			codes := ch.codes[slot0*words : (slot0+64)*words]
			for j := range 64 {
				d := hamming(qc, codes[j*words:(j+1)*words])
				if key := uint64(d)<<32 | uint64(pos0+j); key < worst {
					offer(key)
				}
			}
			return
		}
		for mask != 0 {
			j := bits.TrailingZeros64(mask)
			mask &= mask - 1
			s := slot0 + j
			d := hamming(qc, ch.codes[s*words:(s+1)*words])
			if key := uint64(d)<<32 | uint64(pos0+j); key < worst {
				offer(key)
			}
		}
	})
	return h
}

// blocks calls fn for every run of 64 positions of chunks [lo, hi) that holds an allowed item, with
// the chunk, the run's first slot in it and first position, and the mask of allowed live positions.
func (ix *Index) blocks(allow *bitset.BitSet, lo, hi int, fn func(ch *chunk, slot0, pos0 int, mask uint64)) {
	alive := ix.alive.Words()
	var allowed []uint64
	if allow != nil {
		allowed = allow.Words()
	}
	for ci := lo; ci < hi; ci++ {
		ch := ix.chunks[ci]
		for slot0 := 0; slot0 < ch.n; slot0 += 64 {
			pos0 := ci*chunkSize + slot0
			w := pos0 / 64
			if w >= len(alive) {
				return
			}
			mask := alive[w]
			if allow != nil {
				if w >= len(allowed) {
					return
				}
				mask &= allowed[w]
			}
			if mask != 0 {
				fn(ch, slot0, pos0, mask)
			}
		}
	}
}

func hamming(a, b []uint64) int {
	b = b[:len(a)]
	var d0, d1 int
	i := 0
	for ; i+2 <= len(a); i += 2 {
		d0 += bits.OnesCount64(a[i] ^ b[i])
		d1 += bits.OnesCount64(a[i+1] ^ b[i+1])
	}
	if i < len(a) {
		d0 += bits.OnesCount64(a[i] ^ b[i])
	}
	return d0 + d1
}

func siftUp(h []uint64, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p] >= h[i] {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []uint64) {
	i, n := 0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r] > h[l] {
			m = r
		}
		if h[i] >= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func dotI8(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}

func dotF32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// Exact returns the k items most similar to q by a full scan, best first (ties by position),
// restricted to allow when it is not nil: with float32 vectors when the index keeps them
// (BuildOptions.KeepFloat), otherwise with the int8 codes, whose cosines are within about 1e-3 of
// the float32 ones. It is the baseline Search is measured against, and the shadow check of live
// queries. Same nil cases as Search.
func (ix *Index) Exact(q []float32, k int, allow *bitset.BitSet) []Hit {
	qq, ok := ix.prepare(q)
	if !ok || k <= 0 {
		return nil
	}
	top := make([]Hit, 0, k+1) // sorted best first
	offer := func(ch *chunk, s, p int, score float32) {
		if len(top) == k && score <= top[k-1].Score {
			return
		}
		h := Hit{ID: ch.ids[s], Pos: p, Score: score}
		i, _ := slices.BinarySearchFunc(top, h, byScore)
		top = slices.Insert(top, i, h)
		if len(top) > k {
			top = top[:k]
		}
	}
	dims := ix.dims
	ix.blocks(allow, 0, len(ix.chunks), func(ch *chunk, slot0, pos0 int, mask uint64) {
		for mask != 0 {
			j := bits.TrailingZeros64(mask)
			mask &= mask - 1
			s := slot0 + j
			var score float32
			if ix.keepFloat {
				score = dotF32(qq.unit, ch.f32[s*dims:(s+1)*dims])
			} else {
				score = float32(dotI8(qq.q8, ch.q8[s*dims:(s+1)*dims])) * qq.scale * ch.scale[s]
			}
			offer(ch, s, pos0+j, clampCos(score))
		}
	})
	return top
}

// Recall is the share of want's first k IDs found among got's first k: recall@k of a search (got)
// against the exact answer (want). It is 1 when want is empty.
func Recall(got, want []Hit, k int) float64 {
	want = want[:min(k, len(want))]
	got = got[:min(k, len(got))]
	if len(want) == 0 {
		return 1
	}
	in := make(map[shardkey.ID]struct{}, len(want))
	for _, h := range want {
		in[h.ID] = struct{}{}
	}
	found := 0
	for _, h := range got {
		if _, ok := in[h.ID]; ok {
			found++
			delete(in, h.ID)
		}
	}
	return float64(found) / float64(len(want))
}
