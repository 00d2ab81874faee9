package index_test

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/8thdegree/meridian/api/internal/matching/index"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// corpus is a seeded synthetic set of unit vectors with the structure of real text embeddings rather
// than uniform noise: a direction every vector shares (real embedding spaces are anisotropic), 32
// topics, 1,000 clusters whose sizes follow a Zipf law (a few skills are very common), and
// sub-clusters of 8 items on average (near-duplicate profiles), plus noise per item. With the weights
// below, two vectors of one sub-cluster have a cosine near 0.81, of one cluster 0.58, of one topic
// 0.35, and unrelated ones 0.11.
type corpus struct {
	dims    int
	vecs    []float32 // n × dims, unit, items in order
	items   []index.Item
	queries [][]float32
}

const (
	wShared, wTopic, wCluster, wSub, wNoise = 0.35, 0.5, 0.5, 0.5, 0.45
	nTopics, nClusters, subSize             = 32, 1000, 8
	zipfS                                   = 0.7
)

// clustered generates n items and nq queries of dims dimensions from seed. Queries come from the same
// process as items (a sub-cluster drawn as items draw theirs, fresh noise) and are not in the set.
func clustered(seed uint64, n, dims, nq int) *corpus {
	rng := rand.New(rand.NewPCG(seed, 0))
	gauss := func(r *rand.Rand, dst []float32, w float64) {
		s := w / math.Sqrt(float64(dims))
		for i := range dst {
			dst[i] += float32(r.NormFloat64() * s)
		}
	}
	shared := make([]float32, dims)
	gauss(rng, shared, wShared)
	topics := make([][]float32, nTopics)
	for t := range topics {
		topics[t] = make([]float32, dims)
		gauss(rng, topics[t], wTopic)
	}
	// Cluster popularity: Zipf over a random order, as a cumulative table.
	cum := make([]float64, nClusters)
	total := 0.0
	for j := range cum {
		total += 1 / math.Pow(float64(j+1), zipfS)
		cum[j] = total
	}
	clusters := make([][]float32, nClusters)
	for j := range clusters {
		c := make([]float32, dims)
		copy(c, shared)
		for i, v := range topics[rng.IntN(nTopics)] {
			c[i] += v
		}
		gauss(rng, c, wCluster)
		clusters[j] = c
	}
	nSubs := max(1, n/subSize)
	subs := make([][]float32, nSubs)
	for s := range subs {
		j, _ := slicesSearch(cum, rng.Float64()*total)
		c := make([]float32, dims)
		copy(c, clusters[j])
		gauss(rng, c, wSub)
		subs[s] = c
	}

	cp := &corpus{dims: dims, vecs: make([]float32, n*dims), items: make([]index.Item, n), queries: make([][]float32, nq)}
	ids := shardkey.NewGenerator(func() time.Time { return time.UnixMilli(1_700_000_000_000) }, rand.NewChaCha8([32]byte{byte(seed)}))
	for i := range cp.items {
		id, err := ids.New(shardkey.KindUser, shardkey.KeyspaceID(rng.Uint64()))
		if err != nil {
			panic(err)
		}
		cp.items[i] = index.Item{ID: id, Vec: cp.vecs[i*dims : (i+1)*dims : (i+1)*dims]}
	}
	// One stream per vector, so the work spreads over the cores and stays deterministic.
	one := func(dst []float32, stream uint64) {
		r := rand.New(rand.NewPCG(seed, stream))
		copy(dst, subs[r.IntN(nSubs)])
		gauss(r, dst, wNoise)
		var ss float64
		for _, v := range dst {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss))
		for i := range dst {
			dst[i] *= inv
		}
	}
	for q := range cp.queries {
		cp.queries[q] = make([]float32, dims)
	}
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				one(cp.items[i].Vec, uint64(1+i))
			}
			for q := w; q < nq; q += workers {
				one(cp.queries[q], uint64(1+n+q))
			}
		}()
	}
	wg.Wait()
	return cp
}

// slicesSearch is the first index whose cumulative weight reaches x.
func slicesSearch(cum []float64, x float64) (int, bool) {
	lo, hi := 0, len(cum)-1
	for lo < hi {
		m := (lo + hi) / 2
		if cum[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, true
}

// exactScan is the baseline: a plain float32 scan of the corpus's own vectors, top k by cosine, best
// first, ties by position (the index's order for items built in corpus order).
func (cp *corpus) exactScan(q []float32, k int) []index.Hit {
	top := make([]index.Hit, 0, k+1)
	for i := range cp.items {
		v := cp.vecs[i*cp.dims : (i+1)*cp.dims]
		var s0, s1, s2, s3 float32
		for j := 0; j+4 <= len(v); j += 4 {
			s0 += q[j] * v[j]
			s1 += q[j+1] * v[j+1]
			s2 += q[j+2] * v[j+2]
			s3 += q[j+3] * v[j+3]
		}
		s := s0 + s1 + s2 + s3
		if len(top) == k && s <= top[k-1].Score {
			continue
		}
		at := len(top)
		for at > 0 && top[at-1].Score < s {
			at--
		}
		top = append(top, index.Hit{})
		copy(top[at+1:], top[at:])
		top[at] = index.Hit{ID: cp.items[i].ID, Pos: i, Score: s}
		if len(top) > k {
			top = top[:k]
		}
	}
	return top
}
