package index_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/matching/index"
)

// The index's benchmarks measure it against an exact float32 scan of the same vectors in the same
// run, so a noisy machine moves both sides alike: read the speedup and the recall. Each sub-benchmark
// generates its corpus (seeded, clustered: see corpus), builds the index and runs its queries once
// per call; -benchtime Nx repeats the index's queries N times (more latency samples), nothing else.
//
//	go test -run '^$' -bench . -benchtime 1x ./api/internal/matching/index/
//	MERIDIAN_BENCH_LARGE=1 go test -run '^$' -bench Index -benchtime 1x -timeout 30m ./api/internal/matching/index/
//
// At the default sizes (10k and 100k items × 1,536 dimensions) the whole file runs in about a
// minute on 2 cores; MERIDIAN_BENCH_LARGE=1 adds 1M items (about 9 GB of memory, a few minutes).
const (
	benchDims  = 1536
	benchSeed  = 11
	benchK     = 10
	benchExact = 100 // queries compared with the exact scan
)

func benchSizes() []int {
	sizes := []int{10_000, 100_000}
	if os.Getenv("MERIDIAN_BENCH_LARGE") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	return sizes
}

// latencies runs every search of searches on each query, interleaved (query 1 on each, then query
// 2 on each, ...), rounds times over the queries, and returns each search's sorted latencies:
// interleaving spreads the machine's noise evenly over the configurations compared.
func latencies(queries [][]float32, rounds int, searches ...func(q []float32)) [][]time.Duration {
	out := make([][]time.Duration, len(searches))
	for range rounds {
		for _, q := range queries {
			for i, search := range searches {
				t0 := time.Now()
				search(q)
				out[i] = append(out[i], time.Since(t0))
			}
		}
	}
	for _, l := range out {
		slices.Sort(l)
	}
	return out
}

func quantile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// BenchmarkIndex: top-10 from the serving configuration (sign-bit scan, 400 candidates, int8
// re-score, the default scan split) against an exact float32 scan of the same vectors. Reported:
// p50_ms and p99_ms of the index, exact_p50_ms, speedup (exact p50 / index p50), recall@10 (mean
// over the queries, against the exact scan), p50_1w_ms and p50_2w_ms (the scan on one goroutine and split over 2), recall@10 at 100,
// 200 and 800 candidates, build_s (Build from the vectors, the load time less reading the shards),
// MB/100k (Bytes per 100,000 items).
func BenchmarkIndex(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			cp := clustered(benchSeed, n, benchDims, benchExact)
			t0 := time.Now()
			ix, err := index.Build(benchDims, cp.items)
			if err != nil {
				b.Fatal(err)
			}
			build := time.Since(t0)

			search := func(opt index.SearchOptions) func(q []float32) {
				return func(q []float32) { ix.Search(q, benchK, opt) }
			}
			latencies(cp.queries[:10], 1, search(index.SearchOptions{})) // warm up
			// The default and both scan splits are measured; p50_ms and p99_ms are the default's.
			want := make([][]index.Hit, len(cp.queries))
			next := 0
			exact := func(q []float32) { want[next] = cp.exactScan(q, benchK); next++ }
			configs := []func(q []float32){search(index.SearchOptions{}), search(index.SearchOptions{Workers: 1}), search(index.SearchOptions{Workers: 2})}
			// The exact scan once per query, interleaved with the index's first round.
			first := latencies(cp.queries, 1, append([]func(q []float32){exact}, configs...)...)
			exactLat := first[0]
			more := latencies(cp.queries, max(4, b.N), configs...)
			lat := slices.Sorted(slices.Values(slices.Concat(first[1], more[0])))
			lat1 := slices.Sorted(slices.Values(slices.Concat(first[2], more[1])))
			lat2 := slices.Sorted(slices.Values(slices.Concat(first[3], more[2])))
			recall := func(candidates int) float64 {
				sum := 0.0
				for i, q := range cp.queries {
					sum += index.Recall(ix.Search(q, benchK, index.SearchOptions{Candidates: candidates}), want[i], benchK)
				}
				return sum / float64(len(cp.queries))
			}

			p50, exactP50 := quantile(lat, 0.5), quantile(exactLat, 0.5)
			b.ReportMetric(ms(p50), "p50_ms")
			b.ReportMetric(ms(quantile(lat, 0.99)), "p99_ms")
			b.ReportMetric(ms(quantile(lat1, 0.5)), "p50_1w_ms")
			b.ReportMetric(ms(quantile(lat2, 0.5)), "p50_2w_ms")
			b.ReportMetric(ms(exactP50), "exact_p50_ms")
			b.ReportMetric(float64(exactP50)/float64(p50), "speedup")
			b.ReportMetric(recall(index.DefaultCandidates), "recall@10")
			for _, c := range []int{100, 200, 800} {
				b.ReportMetric(recall(c), fmt.Sprintf("recall@10_c%d", c))
			}
			b.ReportMetric(build.Seconds(), "build_s")
			b.ReportMetric(float64(ix.Bytes())/float64(n)*100_000/1e6, "MB/100k")
			b.ReportMetric(0, "ns/op") // one call's time is setup and baseline; the metrics above are the result
		})
	}
}

// BenchmarkRescore: the choice of re-score vectors at 100k × 1,536, 400 candidates. One index keeps
// float32 copies; the same candidates are re-scored with the int8 codes and with float32, and both
// compared with the index's own Exact (float32; TestRecallClustered checks it against a plain scan).
// Reported:
// recall@10 of each, p50 of each, and the memory of each layout per 100k items.
func BenchmarkRescore(b *testing.B) {
	const n = 100_000
	cp := clustered(benchSeed, n, benchDims, benchExact)
	ix, err := index.BuildWithOptions(benchDims, cp.items, index.BuildOptions{KeepFloat: true})
	if err != nil {
		b.Fatal(err)
	}
	var r8, r32 float64
	for _, q := range cp.queries {
		want := ix.Exact(q, benchK, nil)
		r8 += index.Recall(ix.Search(q, benchK, index.SearchOptions{Rescore: index.RescoreInt8}), want, benchK)
		r32 += index.Recall(ix.Search(q, benchK, index.SearchOptions{Rescore: index.RescoreFloat32}), want, benchK)
	}
	nq := float64(len(cp.queries))
	lat := latencies(cp.queries, max(3, b.N),
		func(q []float32) { ix.Search(q, benchK, index.SearchOptions{Rescore: index.RescoreInt8}) },
		func(q []float32) { ix.Search(q, benchK, index.SearchOptions{Rescore: index.RescoreFloat32}) })
	lat8, lat32 := lat[0], lat[1]
	int8Only, err := index.Build(benchDims, cp.items[:1000])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r8/nq, "recall@10_int8")
	b.ReportMetric(r32/nq, "recall@10_f32")
	b.ReportMetric(ms(quantile(lat8, 0.5)), "p50_int8_ms")
	b.ReportMetric(ms(quantile(lat32, 0.5)), "p50_f32_ms")
	b.ReportMetric(float64(int8Only.Bytes())/1000*100_000/1e6, "MB/100k_int8")
	b.ReportMetric(float64(ix.Bytes())/float64(n)*100_000/1e6, "MB/100k_f32")
	b.ReportMetric(0, "ns/op")
}
