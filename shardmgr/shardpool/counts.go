package shardpool

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// KeyRangeCount is how many reads and writes ReadShard and WriteShard routed to one keyrange on one
// shard since the manager was built. The planner sums them over a region's nodes to find hot keyranges
// (shardmgr/load); an API node exposes them as meridian_api_keyrange_requests_total.
type KeyRangeCount struct {
	Range         shardkey.KeyRange
	Shard, Region string
	Reads, Writes uint64
}

// rangeCounter counts one keyrange's requests on one shard. It fills a cache line of its own, so that
// the counters of two busy keyranges, incremented from different cores, do not share one.
type rangeCounter struct {
	reads, writes atomic.Uint64
	region        string
	_             [32]byte
}

type counterKey struct {
	rng   shardkey.KeyRange
	shard string
}

// countersFor returns the counters of tab's routes, index for index, creating those of keyranges new
// to the manager. A keyrange keeps its counter across topologies while it stays on the same shard, so the
// counts are monotonic as Prometheus counters must be; the counter of a keyrange that left (split, moved
// away) stays too, frozen at its last value, so that no count is lost between a scrape and the change.
// It is called with m.mu held.
func (m *Manager) countersFor(tab *topology.Table) []*rangeCounter {
	if m.counters == nil {
		m.counters = map[counterKey]*rangeCounter{}
	}
	routes := tab.Routes()
	out := make([]*rangeCounter, len(routes))
	for i, r := range routes {
		key := counterKey{r.Range, r.Shard.Name}
		c, ok := m.counters[key]
		if !ok {
			c = &rangeCounter{region: r.Shard.Region}
			m.counters[key] = c
		}
		out[i] = c
	}
	return out
}

// KeyRangeCounts returns the request counts of every keyrange the manager has routed to, in keyspace
// order (then by shard), including keyranges that are no longer in the topology.
func (m *Manager) KeyRangeCounts() []KeyRangeCount {
	m.mu.Lock()
	out := make([]KeyRangeCount, 0, len(m.counters))
	for k, c := range m.counters {
		out = append(out, KeyRangeCount{Range: k.rng, Shard: k.shard, Region: c.region, Reads: c.reads.Load(), Writes: c.writes.Load()})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b KeyRangeCount) int {
		if c := shardkey.CompareKeyRanges(a.Range, b.Range); c != 0 {
			return c
		}
		return cmp.Compare(a.Shard, b.Shard)
	})
	return out
}
