package index_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/bits-and-blooms/bitset"

	"github.com/8thdegree/meridian/api/internal/matching/index"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

func id(n int) shardkey.ID {
	var x shardkey.ID
	x[14] = byte(shardkey.KindUser)
	x[16], x[17], x[18], x[19] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return x
}

func randomVec(r *rand.Rand, dims int) []float32 {
	v := make([]float32, dims)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func randomItems(seed uint64, n, dims int) []index.Item {
	r := rand.New(rand.NewPCG(seed, 1))
	items := make([]index.Item, n)
	for i := range items {
		items[i] = index.Item{ID: id(i), Vec: randomVec(r, dims)}
	}
	return items
}

func mustBuild(t *testing.T, dims int, items []index.Item, opt index.BuildOptions) *index.Index {
	t.Helper()
	ix, err := index.BuildWithOptions(dims, items, opt)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func ids(hits []index.Hit) []shardkey.ID {
	out := make([]shardkey.ID, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

// On clustered data the sign-bit scan plus int8 re-score finds what an exact float32 scan finds:
// recall@10 at least 0.97 at the default 400 candidates. Exact (with KeepFloat) must agree with a
// plain float32 scan of the same vectors, since it is the baseline everything else is measured by.
func TestRecallClustered(t *testing.T) {
	const n, dims, nq, k = 20000, 768, 50, 10
	cp := clustered(7, n, dims, nq)
	ix := mustBuild(t, dims, cp.items, index.BuildOptions{KeepFloat: true})
	var recall, recallFloat, recallNarrow float64
	for _, q := range cp.queries {
		want := cp.exactScan(q, k)
		exact := ix.Exact(q, k, nil)
		if !slices.Equal(ids(exact), ids(want)) {
			t.Fatalf("Exact %v differs from a plain float32 scan %v", exact, want)
		}
		got := ix.Search(q, k, index.SearchOptions{})
		if len(got) != k {
			t.Fatalf("Search returned %d hits, want %d", len(got), k)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Score > got[i-1].Score {
				t.Fatalf("hits not best first: %v", got)
			}
		}
		recall += index.Recall(got, want, k)
		recallFloat += index.Recall(ix.Search(q, k, index.SearchOptions{Rescore: index.RescoreFloat32}), want, k)
		recallNarrow += index.Recall(ix.Search(q, k, index.SearchOptions{Candidates: k}), want, k)
	}
	recall, recallFloat, recallNarrow = recall/nq, recallFloat/nq, recallNarrow/nq
	t.Logf("recall@10: int8 re-score %.3f, float32 re-score %.3f, no re-score margin (10 candidates) %.3f", recall, recallFloat, recallNarrow)
	if recall < 0.97 || recallFloat < 0.97 {
		t.Errorf("recall@10 int8 %.3f, float32 %.3f; want both ≥ 0.97", recall, recallFloat)
	}
	if recallNarrow >= recall {
		t.Errorf("recall with 10 candidates %.3f not below 400 candidates' %.3f: the re-score is not doing the work", recallNarrow, recall)
	}
}

// The int8 re-score's cosines are close to the float32 ones.
func TestInt8Scores(t *testing.T) {
	const dims = 1536
	items := randomItems(3, 500, dims)
	withFloat := mustBuild(t, dims, items, index.BuildOptions{KeepFloat: true})
	int8Only := mustBuild(t, dims, items, index.BuildOptions{})
	if int8Only.HasFloat() || !withFloat.HasFloat() {
		t.Fatal("HasFloat does not follow KeepFloat")
	}
	r := rand.New(rand.NewPCG(4, 4))
	for range 20 {
		// A query near an item, so scores span more than the near-zero cosines of random pairs.
		q := slices.Clone(items[r.IntN(len(items))].Vec)
		for i := range q {
			q[i] += float32(r.NormFloat64())
		}
		f := withFloat.Exact(q, 50, nil)
		g := int8Only.Exact(q, 50, nil)
		byID := map[shardkey.ID]float32{}
		for _, h := range g {
			byID[h.ID] = h.Score
		}
		for _, h := range f {
			s, ok := byID[h.ID]
			if ok && math.Abs(float64(s-h.Score)) > 2e-3 {
				t.Fatalf("int8 cosine %.5f vs float32 %.5f for %v", s, h.Score, h.ID)
			}
		}
		if rec := index.Recall(g, f, 50); rec < 0.95 {
			t.Fatalf("int8 exact scan recall@50 %.3f against float32", rec)
		}
	}
}

func TestSearchEdgeCases(t *testing.T) {
	const dims = 96 // not a multiple of 64: the last code word is partial
	items := randomItems(5, 300, dims)
	ix := mustBuild(t, dims, items, index.BuildOptions{})
	q := items[17].Vec
	if got := ix.Search(q, 0, index.SearchOptions{}); got != nil {
		t.Errorf("k=0: %v", got)
	}
	if got := ix.Search(q[:dims-1], 5, index.SearchOptions{}); got != nil {
		t.Errorf("short query: %v", got)
	}
	if got := ix.Search(make([]float32, dims), 5, index.SearchOptions{}); got != nil {
		t.Errorf("zero query: %v", got)
	}
	nan := slices.Clone(q)
	nan[3] = float32(math.NaN())
	if got := ix.Search(nan, 5, index.SearchOptions{}); got != nil {
		t.Errorf("NaN query: %v", got)
	}
	// An item's own vector (scaled: only the direction counts) finds it first, at cosine ≈ 1.
	scaled := slices.Clone(q)
	for i := range scaled {
		scaled[i] *= 7
	}
	got := ix.Search(scaled, 3, index.SearchOptions{Candidates: 1}) // raised to k
	if len(got) != 3 || got[0].ID != items[17].ID || got[0].Pos != 17 || got[0].Score < 0.995 || got[0].Score > 1 {
		t.Fatalf("own vector: %v", got)
	}
	// k beyond the index: everything, best first, same as Exact.
	all := ix.Search(q, 1000, index.SearchOptions{})
	if len(all) != len(items) {
		t.Fatalf("k > Len: %d hits", len(all))
	}
	if ex := ix.Exact(q, 1000, nil); index.Recall(all, ex, 1000) != 1 {
		t.Fatal("k > Len: Search and Exact disagree on the set")
	}
	var empty *index.Index
	if empty.Search(q, 5, index.SearchOptions{}) != nil || empty.Len() != 0 || empty.Exact(q, 5, nil) != nil {
		t.Error("nil index not empty")
	}
	if _, ok := empty.Pos(items[0].ID); ok {
		t.Error("nil index has a position")
	}
	// Both scan splits give the same answer.
	one := ix.Search(q, 10, index.SearchOptions{Workers: 1})
	two := ix.Search(q, 10, index.SearchOptions{Workers: 2})
	if !slices.Equal(one, two) {
		t.Fatalf("1 worker %v, 2 workers %v", one, two)
	}
}

func TestBuildErrors(t *testing.T) {
	good := randomItems(1, 3, 8)
	zero := slices.Clone(good)
	zero[1] = index.Item{ID: id(1), Vec: make([]float32, 8)}
	inf := slices.Clone(good)
	inf[2] = index.Item{ID: id(2), Vec: slices.Clone(good[2].Vec)}
	inf[2].Vec[0] = float32(math.Inf(1))
	short := slices.Clone(good)
	short[0] = index.Item{ID: id(0), Vec: good[0].Vec[:7]}
	dup := slices.Clone(good)
	dup[2] = index.Item{ID: id(0), Vec: good[2].Vec}
	for _, tc := range []struct {
		name  string
		dims  int
		items []index.Item
		want  error
	}{
		{"no dims", 0, nil, index.ErrDims},
		{"wrong length", 8, short, index.ErrDims},
		{"zero vector", 8, zero, index.ErrVector},
		{"infinite", 8, inf, index.ErrVector},
		{"duplicate", 8, dup, index.ErrDuplicate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix, err := index.Build(tc.dims, tc.items)
			if !errors.Is(err, tc.want) || ix != nil {
				t.Fatalf("got %v, %v; want %v", ix, err, tc.want)
			}
		})
	}
	ix, err := index.Build(8, nil)
	if err != nil || ix.Len() != 0 || ix.Dims() != 8 {
		t.Fatalf("empty build: %v %v", ix, err)
	}
}

func TestFilters(t *testing.T) {
	const n, dims = 3000, 128
	items := randomItems(9, n, dims)
	ix := mustBuild(t, dims, items, index.BuildOptions{})
	r := rand.New(rand.NewPCG(9, 9))

	// A third of the items: every hit is one of them, and Search agrees with Exact on the subset.
	third := ix.Bitmap(func(x shardkey.ID) bool { p, _ := ix.Pos(x); return p%3 == 0 })
	if third.Count() != n/3 {
		t.Fatalf("bitmap has %d positions, want %d", third.Count(), n/3)
	}
	var recall float64
	for range 20 {
		q := randomVec(r, dims)
		got := ix.Search(q, 10, index.SearchOptions{Allow: third})
		for _, h := range got {
			if h.Pos%3 != 0 {
				t.Fatalf("hit %v not allowed", h)
			}
		}
		want := ix.Exact(q, 10, third)
		for _, h := range want {
			if h.Pos%3 != 0 {
				t.Fatalf("exact hit %v not allowed", h)
			}
		}
		recall += index.Recall(got, want, 10)
	}
	if recall/20 < 0.9 {
		t.Errorf("filtered recall@10 %.3f", recall/20)
	}

	// Five allowed items, one of them deleted: the other four, whatever the query, best first.
	few := bitset.New(uint(n))
	for _, p := range []uint{3, 700, 701, 2048, 2999} {
		few.Set(p)
	}
	ix2, err := ix.With(nil, []shardkey.ID{items[701].ID})
	if err != nil {
		t.Fatal(err)
	}
	got := ix2.Search(randomVec(r, dims), 10, index.SearchOptions{Allow: few})
	gotPos := []int{}
	for _, h := range got {
		gotPos = append(gotPos, h.Pos)
	}
	slices.Sort(gotPos)
	if !slices.Equal(gotPos, []int{3, 700, 2048, 2999}) {
		t.Fatalf("allowed positions found %v", gotPos)
	}

	// A bitmap shorter than the index allows nothing past its length; an empty one allows nothing.
	short := bitset.New(10)
	short.Set(4)
	if got := ix.Search(items[2000].Vec, 5, index.SearchOptions{Allow: short}); len(got) != 1 || got[0].Pos != 4 {
		t.Fatalf("short bitmap: %v", got)
	}
	if got := ix.Search(items[0].Vec, 5, index.SearchOptions{Allow: bitset.New(0)}); len(got) != 0 {
		t.Fatalf("empty bitmap: %v", got)
	}
	if got := ix.Exact(items[0].Vec, 5, bitset.New(uint(n))); len(got) != 0 {
		t.Fatalf("empty bitmap, exact: %v", got)
	}
}

func TestWith(t *testing.T) {
	const n, dims = 1000, 64
	items := randomItems(11, n, dims)
	base := mustBuild(t, dims, items, index.BuildOptions{})
	r := rand.New(rand.NewPCG(11, 11))

	moved := randomVec(r, dims) // item 10's new vector
	fresh := randomVec(r, dims) // a new item's
	newID := id(1_000_000)
	next, err := base.With(
		[]index.Item{{ID: items[10].ID, Vec: moved}, {ID: newID, Vec: fresh}},
		[]shardkey.ID{items[20].ID, id(9_999_999) /* absent: ignored */},
	)
	if err != nil {
		t.Fatal(err)
	}
	if next.Len() != n || next.Slots() != n+1 || next.Deleted() != 1 {
		t.Fatalf("Len %d Slots %d Deleted %d", next.Len(), next.Slots(), next.Deleted())
	}
	// The upserted item keeps its position and is found by its new vector; the new one is appended.
	if p, ok := next.Pos(items[10].ID); !ok || p != 10 {
		t.Fatalf("upserted item at %d %v", p, ok)
	}
	if got := next.Search(moved, 1, index.SearchOptions{}); got[0].ID != items[10].ID || got[0].Pos != 10 {
		t.Fatalf("new vector finds %v", got)
	}
	if p, ok := next.Pos(newID); !ok || p != n {
		t.Fatalf("new item at %d %v", p, ok)
	}
	if got := next.Search(fresh, 1, index.SearchOptions{}); got[0].ID != newID {
		t.Fatalf("new item's vector finds %v", got)
	}
	// The deleted item is gone from positions, IDs and results, even searched by its own vector.
	if _, ok := next.Pos(items[20].ID); ok {
		t.Fatal("deleted item has a position")
	}
	if _, ok := next.ID(20); ok {
		t.Fatal("deleted position has an ID")
	}
	for _, h := range next.Search(items[20].Vec, 20, index.SearchOptions{}) {
		if h.ID == items[20].ID {
			t.Fatal("deleted item found")
		}
	}
	// The parent snapshot is unchanged.
	if base.Len() != n || base.Slots() != n {
		t.Fatalf("base changed: Len %d Slots %d", base.Len(), base.Slots())
	}
	if got := base.Search(items[10].Vec, 1, index.SearchOptions{}); got[0].ID != items[10].ID {
		t.Fatalf("base lost item 10's old vector: %v", got)
	}
	if got := base.Search(items[20].Vec, 1, index.SearchOptions{}); got[0].ID != items[20].ID {
		t.Fatalf("base lost item 20: %v", got)
	}
	if _, ok := base.Pos(newID); ok {
		t.Fatal("base has the new item")
	}

	// Refusals change nothing.
	zero := make([]float32, dims)
	for _, tc := range []struct {
		name    string
		upserts []index.Item
		deletes []shardkey.ID
		want    error
	}{
		{"wrong length", []index.Item{{ID: newID, Vec: fresh[:3]}}, nil, index.ErrDims},
		{"zero vector", []index.Item{{ID: items[1].ID, Vec: zero}}, nil, index.ErrVector},
		{"twice", []index.Item{{ID: items[1].ID, Vec: fresh}, {ID: items[1].ID, Vec: moved}}, nil, index.ErrDuplicate},
		{"upserted and deleted", []index.Item{{ID: items[1].ID, Vec: fresh}}, []shardkey.ID{items[1].ID}, index.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := next.With(tc.upserts, tc.deletes)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			if p, _ := next.Pos(items[1].ID); p != 1 || next.Len() != n {
				t.Fatal("a refused With changed the snapshot")
			}
		})
	}

	// Compact: no empty positions, the same items, the same answers.
	c := next.Compact()
	if c.Len() != n || c.Slots() != n || c.Deleted() != 0 {
		t.Fatalf("compacted Len %d Slots %d", c.Len(), c.Slots())
	}
	for range 10 {
		q := randomVec(r, dims)
		if a, b := ids(next.Search(q, 10, index.SearchOptions{})), ids(c.Search(q, 10, index.SearchOptions{})); !slices.Equal(a, b) {
			t.Fatalf("compacted answers %v, before %v", b, a)
		}
	}
	if p, _ := c.Pos(items[21].ID); p != 20 {
		t.Fatalf("item 21 at %d after compaction, want 20", p)
	}

	// With on an empty built index, and growth past several chunks.
	empty, err := index.Build(dims, nil)
	if err != nil {
		t.Fatal(err)
	}
	grown, err := empty.With(items, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		if p, ok := grown.Pos(it.ID); !ok || p != i {
			t.Fatalf("item %d at %d", i, p)
		}
	}
	if got := grown.Search(items[999].Vec, 1, index.SearchOptions{}); got[0].ID != items[999].ID {
		t.Fatalf("grown index: %v", got)
	}
	var unbuilt index.Index
	if _, err := unbuilt.With(items[:1], nil); !errors.Is(err, index.ErrDims) {
		t.Fatalf("With on a zero Index: %v", err)
	}
	if unbuilt.Len() != 0 || unbuilt.Bytes() != 0 || unbuilt.Compact().Len() != 0 || unbuilt.Search(items[0].Vec, 1, index.SearchOptions{}) != nil {
		t.Fatal("zero Index not empty")
	}
}

func TestLive(t *testing.T) {
	var zero index.Live
	if zero.Load() != nil || zero.Load().Search(make([]float32, 4), 1, index.SearchOptions{}) != nil {
		t.Fatal("zero Live not empty")
	}
	if _, err := zero.Apply(nil, nil); err == nil {
		t.Fatal("Apply on an empty Live accepted")
	}

	const n, dims, writers, perWriter = 500, 32, 2, 60
	items := randomItems(13, n, dims)
	first := mustBuild(t, dims, items, index.BuildOptions{})
	live := index.NewLive(first)
	stop := make(chan struct{})
	var readers, wg sync.WaitGroup
	errs := make(chan string, 8)
	// Readers see whole snapshots only: a snapshot's Len never changes under them, and every hit
	// they get is an item of that snapshot.
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := rand.New(rand.NewPCG(1, 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ix := live.Load()
				before := ix.Len()
				for _, h := range ix.Search(randomVec(r, dims), 5, index.SearchOptions{}) {
					if p, ok := ix.Pos(h.ID); !ok || p != h.Pos {
						errs <- "hit not in its snapshot"
						return
					}
				}
				if ix.Len() != before {
					errs <- "snapshot changed under a reader"
					return
				}
			}
		}()
	}
	// Writers race to Apply: none of their changes is lost.
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for i := range perWriter {
				it := index.Item{ID: id(10_000 + w*perWriter + i), Vec: randomVec(r, dims)}
				if _, err := live.Apply([]index.Item{it}, []shardkey.ID{items[w*perWriter+i].ID}); err != nil {
					errs <- err.Error()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	cur := live.Load()
	if cur.Len() != n || cur.Slots() != n+writers*perWriter {
		t.Fatalf("after the writers: Len %d Slots %d", cur.Len(), cur.Slots())
	}
	for w := range writers {
		for i := range perWriter {
			if _, ok := cur.Pos(id(10_000 + w*perWriter + i)); !ok {
				t.Fatalf("writer %d's item %d lost", w, i)
			}
			if _, ok := cur.Pos(items[w*perWriter+i].ID); ok {
				t.Fatalf("writer %d's delete %d lost", w, i)
			}
		}
	}
	if first.Len() != n || first.Slots() != n {
		t.Fatal("the first snapshot changed")
	}
	if prev := live.Swap(first); prev != cur || live.Load() != first {
		t.Fatal("Swap did not return the previous snapshot")
	}
}

func TestRecall(t *testing.T) {
	h := func(ns ...int) []index.Hit {
		out := make([]index.Hit, len(ns))
		for i, n := range ns {
			out[i] = index.Hit{ID: id(n)}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		got, want []index.Hit
		k         int
		recall    float64
	}{
		{"same", h(1, 2, 3), h(1, 2, 3), 3, 1},
		{"order does not count", h(3, 1, 2), h(1, 2, 3), 3, 1},
		{"disjoint", h(4, 5), h(1, 2), 2, 0},
		{"half", h(1, 9, 2, 8), h(1, 2, 3, 4), 4, 0.5},
		{"only the first k of got", h(9, 8, 1), h(1, 2), 2, 0},
		{"want shorter than k", h(1, 5, 6), h(1), 3, 1},
		{"got shorter", h(1), h(1, 2), 2, 0.5},
		{"repeated hit counts once", h(1, 1), h(1, 2), 2, 0.5},
		{"nothing to find", h(1), nil, 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := index.Recall(tc.got, tc.want, tc.k); got != tc.recall {
				t.Fatalf("Recall = %v, want %v", got, tc.recall)
			}
		})
	}
}
