package index

import (
	"math/rand/v2"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// With copies only the chunks it writes: changing one item and appending one shares every other
// chunk with the parent.
func TestWithSharesChunks(t *testing.T) {
	ix := randomIndex(10*chunkSize+10, 64)
	last := len(ix.chunks) - 1
	up := Item{ID: ix.chunks[3].ids[5], Vec: make([]float32, 64)}
	up.Vec[0] = 1
	fresh := Item{ID: shardkey.ID{14: byte(shardkey.KindJob)}, Vec: up.Vec}
	nx, err := ix.With([]Item{up, fresh}, []shardkey.ID{ix.chunks[7].ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	for ci := range ix.chunks {
		shared := nx.chunks[ci] == ix.chunks[ci]
		if want := ci != 3 && ci != last; shared != want {
			t.Errorf("chunk %d shared %v, want %v", ci, shared, want)
		}
	}
	if ix.chunks[3].q8[5*64] == nx.chunks[3].q8[5*64] {
		t.Error("the upsert did not reach the copy")
	}
	if ix.chunks[last].n != 10 || nx.chunks[last].n != 11 {
		t.Errorf("last chunk holds %d then %d", ix.chunks[last].n, nx.chunks[last].n)
	}
}

func randomIndex(n, dims int) *Index {
	r := rand.New(rand.NewPCG(1, 2))
	items := make([]Item, n)
	for i := range items {
		v := make([]float32, dims)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		var id shardkey.ID
		id[14] = byte(shardkey.KindUser)
		id[16], id[17], id[18], id[19] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		items[i] = Item{ID: id, Vec: v}
	}
	ix, err := Build(dims, items)
	if err != nil {
		panic(err)
	}
	return ix
}
