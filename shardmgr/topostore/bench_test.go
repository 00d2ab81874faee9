package topostore_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// BenchmarkWatchDelivery measures how long a new version takes to reach subscribers: one op is one
// Update followed by all three watchers' subscribers receiving it. It reports, in microseconds, the
// delay from Update returning to each subscriber receiving (p50, p99, max over every delivery; a
// delivery that beats Update's own response counts as 0) and, as the baseline from the same run,
// the Update round trip itself. Run it with -benchtime=50x for the 50-update sample.
func BenchmarkWatchDelivery(b *testing.B) {
	ctx := context.Background()
	c := consulClient(b, nil)
	key := uniqueKey(b)
	s := topostore.NewStore(c, key)
	topo := example(1)
	idx, err := s.Create(ctx, topo)
	if err != nil {
		b.Fatal(err)
	}

	const watchers = 3
	type delivery struct {
		version uint64
		at      time.Time
	}
	got := make(chan delivery, watchers*4)
	for range watchers {
		w := startWatcher(b, c, topostore.WatcherConfig{Key: key, CachePath: filepath.Join(b.TempDir(), "topology.json")})
		waitReady(b, w)
		ch, cancel := w.Subscribe(16)
		b.Cleanup(cancel)
		<-ch // the copy in service at subscription
		go func(ch <-chan *topology.Topology) {
			for t := range ch {
				got <- delivery{t.Version, time.Now()}
			}
		}(ch)
	}

	var delays, updates []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		began := time.Now()
		if idx, err = s.Update(ctx, topo, idx); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		updates = append(updates, returned.Sub(began))
		for range watchers {
			var d delivery
			select {
			case d = <-got:
			case <-time.After(patience):
				b.Fatalf("version %d never delivered", topo.Version)
			}
			if d.version != topo.Version {
				b.Fatalf("delivered version %d, want %d", d.version, topo.Version)
			}
			delays = append(delays, max(0, d.at.Sub(returned)))
		}
	}
	b.StopTimer()

	b.ReportMetric(micros(percentile(delays, 50)), "p50-delivery-µs")
	b.ReportMetric(micros(percentile(delays, 99)), "p99-delivery-µs")
	b.ReportMetric(micros(percentile(delays, 100)), "max-delivery-µs")
	b.ReportMetric(micros(percentile(updates, 50)), "p50-update-µs")
}

// percentile returns the p-th percentile (nearest rank) of ds; it sorts ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := (p*len(ds) + 99) / 100 // ceil(p/100 * n)
	return ds[max(rank, 1)-1]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
