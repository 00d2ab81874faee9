package index

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"sync"

	"github.com/bits-and-blooms/bitset"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// chunkSize is the number of positions in one chunk of storage. A multiple of 64, so a chunk's filter
// bits are whole words; small enough that With copies little when it touches a chunk (256 × 1,536
// dimensions is 384 KiB of int8 codes and 48 KiB of sign bits).
const chunkSize = 256

// Errors returned by Build and With, wrapped with the item they are about.
var (
	ErrDims      = errors.New("index: vector length differs from the index's dimensions")
	ErrVector    = errors.New("index: vector is zero or not finite")
	ErrDuplicate = errors.New("index: ID given twice")
	ErrConflict  = errors.New("index: ID both upserted and deleted")
)

// Item is one vector and the entity it belongs to.
type Item struct {
	ID  shardkey.ID
	Vec []float32
}

// BuildOptions tunes what an index stores.
type BuildOptions struct {
	// KeepFloat keeps a float32 copy of every vector (4 bytes per dimension, four times the int8
	// codes): Exact is then an exact float32 scan and SearchOptions.Rescore may be RescoreFloat32.
	// Without it Exact scans the int8 codes. Serving does not need it (see the package doc).
	KeepFloat bool
}

// Index is an immutable snapshot of vectors: safe for any number of concurrent readers, changed only
// by deriving a new snapshot with With. The zero value and a nil *Index are empty indexes.
//
// Every item has a position, its place in the snapshot's storage, which filter bitmaps are indexed
// by. With never moves an existing item: an upserted item keeps its position, new items get new
// positions after the last one, deleted positions stay empty. Compact renumbers.
type Index struct {
	dims, words int
	keepFloat   bool
	chunks      []*chunk
	slots       int            // positions handed out, deleted ones included
	alive       *bitset.BitSet // the positions holding an item
	pos         map[shardkey.ID]int32
}

// chunk holds chunkSize positions, each field contiguous so the scans run over flat slices. Chunks
// are shared between snapshots and never written once published: With copies a chunk it changes.
type chunk struct {
	n     int // positions used
	ids   []shardkey.ID
	codes []uint64  // words per position: bit j is set when dimension j is positive
	q8    []int8    // dims per position: round(v / scale)
	scale []float32 // per position: max |v| / 127
	f32   []float32 // dims per position, only with KeepFloat
}

func newChunk(dims, words int, keepFloat bool) *chunk {
	c := &chunk{
		ids:   make([]shardkey.ID, chunkSize),
		codes: make([]uint64, chunkSize*words),
		q8:    make([]int8, chunkSize*dims),
		scale: make([]float32, chunkSize),
	}
	if keepFloat {
		c.f32 = make([]float32, chunkSize*dims)
	}
	return c
}

func (c *chunk) clone() *chunk {
	d := &chunk{
		n:     c.n,
		ids:   append([]shardkey.ID(nil), c.ids...),
		codes: append([]uint64(nil), c.codes...),
		q8:    append([]int8(nil), c.q8...),
		scale: append([]float32(nil), c.scale...),
	}
	if c.f32 != nil {
		d.f32 = append([]float32(nil), c.f32...)
	}
	return d
}

// Build returns an index of items, each of dims dimensions, without float32 copies.
func Build(dims int, items []Item) (*Index, error) {
	return BuildWithOptions(dims, items, BuildOptions{})
}

// BuildWithOptions returns an index of items. Vectors need not be unit length: the index stores
// their direction, and scores are cosines. Items take positions in the order given. It fails, naming
// the item, for a vector of the wrong length, a zero or non-finite vector, or an ID given twice.
func BuildWithOptions(dims int, items []Item, opt BuildOptions) (*Index, error) {
	if dims <= 0 {
		return nil, fmt.Errorf("%w: dims %d", ErrDims, dims)
	}
	ix := &Index{
		dims:      dims,
		words:     (dims + 63) / 64,
		keepFloat: opt.KeepFloat,
		pos:       make(map[shardkey.ID]int32, len(items)),
	}
	for i, it := range items {
		if err := ix.check(it); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if _, dup := ix.pos[it.ID]; dup {
			return nil, fmt.Errorf("item %d: %w: %s", i, ErrDuplicate, it.ID)
		}
		ix.pos[it.ID] = int32(i)
	}
	nChunks := (len(items) + chunkSize - 1) / chunkSize
	ix.chunks = make([]*chunk, nChunks)
	ix.slots = len(items)
	ix.alive = bitset.New(uint(len(items)))
	ix.alive.SetRange(0, uint(len(items)))

	// Encoding is independent per chunk: spread it over the cores.
	workers := min(runtime.GOMAXPROCS(0), nChunks)
	var wg sync.WaitGroup
	next := make(chan int, nChunks)
	for ci := range nChunks {
		next <- ci
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scratch := make([]float32, dims)
			for ci := range next {
				c := newChunk(dims, ix.words, opt.KeepFloat)
				lo := ci * chunkSize
				hi := min(lo+chunkSize, len(items))
				for i := lo; i < hi; i++ {
					ix.encode(c, i-lo, items[i], scratch)
				}
				c.n = hi - lo
				ix.chunks[ci] = c
			}
		}()
	}
	wg.Wait()
	return ix, nil
}

// check validates an item's vector: right length, finite, not zero.
func (ix *Index) check(it Item) error {
	if len(it.Vec) != ix.dims {
		return fmt.Errorf("%w: %s has %d, want %d", ErrDims, it.ID, len(it.Vec), ix.dims)
	}
	var ss float64
	for _, v := range it.Vec {
		ss += float64(v) * float64(v)
	}
	if ss == 0 || math.IsNaN(ss) || math.IsInf(ss, 0) {
		return fmt.Errorf("%w: %s", ErrVector, it.ID)
	}
	return nil
}

// normalize writes v / |v| into dst. The caller has checked that v is finite and not zero.
func normalize(dst, v []float32) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		dst[i] = float32(float64(x) * inv)
	}
}

// encode stores it at slot of c: sign bits, int8 codes and scale, float32 copy if kept.
func (ix *Index) encode(c *chunk, slot int, it Item, scratch []float32) {
	u := scratch[:ix.dims]
	normalize(u, it.Vec)
	c.ids[slot] = it.ID
	signBits(c.codes[slot*ix.words:(slot+1)*ix.words], u)
	c.scale[slot] = quantize(c.q8[slot*ix.dims:(slot+1)*ix.dims], u)
	if c.f32 != nil {
		copy(c.f32[slot*ix.dims:(slot+1)*ix.dims], u)
	}
}

// signBits sets bit j of dst when u[j] is non-negative (its sign bit is clear); the bits past len(u)
// stay zero, in items and queries alike, so they never count in a distance. Branch-free: the signs
// of embedding coordinates are coin flips, which a branch would mispredict half the time.
func signBits(dst []uint64, u []float32) {
	for w := range dst {
		var word uint64
		part := u[w*64 : min(len(u), (w+1)*64)]
		for j, x := range part {
			word |= uint64(^math.Float32bits(x)>>31&1) << uint(j)
		}
		dst[w] = word
	}
}

// quantize writes round(u / s) into dst with s = max|u| / 127 and returns s. Branch-free, for the
// same reason as signBits: the magnitude of a finite float orders as its bits do.
func quantize(dst []int8, u []float32) float32 {
	var mb uint32
	for _, x := range u {
		mb = max(mb, math.Float32bits(x)&0x7fffffff)
	}
	m := math.Float32frombits(mb)
	if m == 0 {
		clear(dst)
		return 0
	}
	s := m / 127
	inv := 127 / m
	dst = dst[:len(u)]
	for j, x := range u {
		// x*inv is within [-127, 127]; adding ±0.5 and truncating rounds half away from zero.
		half := math.Float32frombits(0x3f000000 | math.Float32bits(x)&0x80000000)
		dst[j] = int8(int32(x*inv + half))
	}
	return s
}

// Dims is the vectors' length.
func (ix *Index) Dims() int {
	if ix == nil {
		return 0
	}
	return ix.dims
}

// Len is the number of items.
func (ix *Index) Len() int {
	if ix == nil {
		return 0
	}
	return len(ix.pos)
}

// Slots is the number of positions, deleted ones included: a filter bitmap for this snapshot needs
// this many bits.
func (ix *Index) Slots() int {
	if ix == nil {
		return 0
	}
	return ix.slots
}

// Deleted is the number of empty positions left by deletes (Compact reclaims them).
func (ix *Index) Deleted() int { return ix.Slots() - ix.Len() }

// HasFloat reports whether the index keeps float32 vectors (BuildOptions.KeepFloat).
func (ix *Index) HasFloat() bool { return ix != nil && ix.keepFloat }

// Pos returns the position of id.
func (ix *Index) Pos(id shardkey.ID) (int, bool) {
	if ix == nil {
		return 0, false
	}
	p, ok := ix.pos[id]
	return int(p), ok
}

// ID returns the item at position pos; false for an empty or out-of-range position.
func (ix *Index) ID(pos int) (shardkey.ID, bool) {
	if ix == nil || pos < 0 || pos >= ix.slots || !ix.alive.Test(uint(pos)) {
		return shardkey.ID{}, false
	}
	return ix.chunks[pos/chunkSize].ids[pos%chunkSize], true
}

// Bitmap returns the positions of the items keep accepts, for SearchOptions.Allow: filters such as
// "open jobs" or "available freelancers" are built once per snapshot and shared by its queries.
func (ix *Index) Bitmap(keep func(id shardkey.ID) bool) *bitset.BitSet {
	b := bitset.New(uint(ix.Slots()))
	if ix == nil {
		return b
	}
	for id, p := range ix.pos {
		if keep(id) {
			b.Set(uint(p))
		}
	}
	return b
}

// Bytes estimates the memory the snapshot holds: its chunks (capacity, not only the used part), the
// alive bitmap and the ID map. Chunks shared with other snapshots count in each.
func (ix *Index) Bytes() int64 {
	if ix == nil || ix.alive == nil {
		return 0
	}
	per := int64(len(shardkey.ID{})) + int64(ix.words)*8 + int64(ix.dims) + 4
	if ix.keepFloat {
		per += int64(ix.dims) * 4
	}
	const mapEntry = 20 + 4 + 8 // key, value and the table's control and slack, roughly
	return int64(len(ix.chunks))*chunkSize*per + int64(len(ix.alive.Words()))*8 + int64(len(ix.pos))*mapEntry
}

// With returns a new snapshot with upserts added or replaced and deletes removed; ix is unchanged.
// The new snapshot shares every chunk it does not change with ix. An upserted item keeps its
// position; new items are appended; deleting an absent ID does nothing. It fails, changing nothing,
// for an invalid vector, an ID upserted twice, or one both upserted and deleted.
func (ix *Index) With(upserts []Item, deletes []shardkey.ID) (*Index, error) {
	if ix == nil || ix.dims == 0 {
		return nil, fmt.Errorf("%w: With needs an index made by Build, which knows its dimensions", ErrDims)
	}
	seen := make(map[shardkey.ID]struct{}, len(upserts))
	for i, it := range upserts {
		if err := ix.check(it); err != nil {
			return nil, fmt.Errorf("upsert %d: %w", i, err)
		}
		if _, dup := seen[it.ID]; dup {
			return nil, fmt.Errorf("upsert %d: %w: %s", i, ErrDuplicate, it.ID)
		}
		seen[it.ID] = struct{}{}
	}
	for _, id := range deletes {
		if _, both := seen[id]; both {
			return nil, fmt.Errorf("%w: %s", ErrConflict, id)
		}
	}

	nx := &Index{
		dims:      ix.dims,
		words:     ix.words,
		keepFloat: ix.keepFloat,
		chunks:    append([]*chunk(nil), ix.chunks...),
		slots:     ix.slots,
		alive:     ix.alive.Clone(),
		pos:       maps.Clone(ix.pos),
	}
	owned := make(map[int]bool) // chunks already copied for this snapshot
	writable := func(ci int) *chunk {
		if !owned[ci] {
			nx.chunks[ci] = nx.chunks[ci].clone()
			owned[ci] = true
		}
		return nx.chunks[ci]
	}
	for _, id := range deletes {
		p, ok := nx.pos[id]
		if !ok {
			continue
		}
		delete(nx.pos, id)
		nx.alive.Clear(uint(p))
	}
	scratch := make([]float32, ix.dims)
	for _, it := range upserts {
		p, ok := nx.pos[it.ID]
		if !ok {
			p = int32(nx.slots)
			nx.slots++
			ci := int(p) / chunkSize
			if ci == len(nx.chunks) {
				nx.chunks = append(nx.chunks, newChunk(ix.dims, ix.words, ix.keepFloat))
				owned[ci] = true
			}
			writable(ci).n = int(p)%chunkSize + 1
			nx.pos[it.ID] = p
			nx.alive.Set(uint(p))
		}
		nx.encode(writable(int(p)/chunkSize), int(p)%chunkSize, it, scratch)
	}
	return nx, nil
}

// Compact returns a snapshot of the same items without empty positions, in position order: every
// position after the first deleted one changes, so filter bitmaps must be rebuilt for it.
func (ix *Index) Compact() *Index {
	if ix == nil || ix.alive == nil {
		return ix
	}
	nx := &Index{
		dims:      ix.dims,
		words:     ix.words,
		keepFloat: ix.keepFloat,
		slots:     len(ix.pos),
		alive:     bitset.New(uint(len(ix.pos))),
		pos:       make(map[shardkey.ID]int32, len(ix.pos)),
	}
	nx.alive.SetRange(0, uint(len(ix.pos)))
	var dst *chunk
	for p, ok := ix.alive.NextSet(0); ok; p, ok = ix.alive.NextSet(p + 1) {
		src, s := ix.chunks[p/chunkSize], int(p%chunkSize)
		if dst == nil || dst.n == chunkSize {
			dst = newChunk(ix.dims, ix.words, ix.keepFloat)
			nx.chunks = append(nx.chunks, dst)
		}
		d := dst.n
		dst.ids[d] = src.ids[s]
		copy(dst.codes[d*ix.words:(d+1)*ix.words], src.codes[s*ix.words:(s+1)*ix.words])
		copy(dst.q8[d*ix.dims:(d+1)*ix.dims], src.q8[s*ix.dims:(s+1)*ix.dims])
		dst.scale[d] = src.scale[s]
		if src.f32 != nil {
			copy(dst.f32[d*ix.dims:(d+1)*ix.dims], src.f32[s*ix.dims:(s+1)*ix.dims])
		}
		nx.pos[src.ids[s]] = int32((len(nx.chunks)-1)*chunkSize + d)
		dst.n++
	}
	return nx
}
