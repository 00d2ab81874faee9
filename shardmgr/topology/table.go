package topology

import (
	"errors"
	"slices"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// ErrNoShard is returned by Lookup for a keyspace ID that no keyrange covers (an unknown region code).
var ErrNoShard = errors.New("no shard owns the keyspace ID")

// Route is the answer of a lookup: the shard that owns a keyspace ID, the keyrange it owns it through, and
// the keyrange's state.
type Route struct {
	// KeyspaceID is the ksid after relocation.
	KeyspaceID shardkey.KeyspaceID
	Range      shardkey.KeyRange
	State      State
	Shard      *Shard
	Region     *Region
	// RelocationFrozen is true when the ksid (after relocation) is the From of a frozen relocation:
	// a pin's cutover, during which its writes are held as a frozen keyrange's are.
	RelocationFrozen bool
}

// Table is a compiled, read-only view of a Topology built for the hot path. It is safe for concurrent use.
type Table struct {
	topo *Topology
	// starts[i], ends[i] bound the i-th keyrange in start order; entries index into routes.
	starts []uint64
	routes []Route
	moved  map[shardkey.KeyspaceID]shardkey.KeyspaceID
	// frozen holds the From of every frozen relocation (a pin's cutover).
	frozen map[shardkey.KeyspaceID]struct{}
}

// Compile validates t and builds its lookup table. The table keeps a private copy: later changes to t do
// not affect it.
func Compile(t *Topology) (*Table, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	t = t.Clone()
	tab := &Table{topo: t, moved: make(map[shardkey.KeyspaceID]shardkey.KeyspaceID, len(t.Relocations))}
	shards := make(map[string]*Shard, len(t.Shards))
	for i := range t.Shards {
		shards[t.Shards[i].Name] = &t.Shards[i]
	}
	regions := make(map[string]*Region, len(t.Regions))
	for i := range t.Regions {
		regions[t.Regions[i].Name] = &t.Regions[i]
	}
	tab.routes = make([]Route, 0, len(t.KeyRanges))
	for _, a := range t.KeyRanges {
		s := shards[a.Shard]
		tab.routes = append(tab.routes, Route{Range: a.Range, State: a.State, Shard: s, Region: regions[s.Region]})
	}
	slices.SortFunc(tab.routes, func(a, b Route) int { return shardkey.CompareKeyRanges(a.Range, b.Range) })
	tab.starts = make([]uint64, len(tab.routes))
	for i, r := range tab.routes {
		tab.starts[i] = r.Range.Start
	}
	for _, rel := range t.Relocations {
		if !rel.Active() {
			if tab.frozen == nil {
				tab.frozen = make(map[shardkey.KeyspaceID]struct{})
			}
			tab.frozen[rel.From] = struct{}{}
			continue
		}
		tab.moved[rel.From] = rel.To
	}
	return tab, nil
}

// Topology returns the document the table was built from. Callers must not modify it.
func (tab *Table) Topology() *Topology { return tab.topo }

// Version is the document's version.
func (tab *Table) Version() uint64 { return tab.topo.Version }

// Resolve applies the relocation map (its active entries): the ksid a user's data lives under now.
func (tab *Table) Resolve(k shardkey.KeyspaceID) shardkey.KeyspaceID {
	if len(tab.moved) != 0 {
		if to, ok := tab.moved[k]; ok {
			return to
		}
	}
	return k
}

// Lookup returns the shard that owns k after relocation. It does not allocate.
func (tab *Table) Lookup(k shardkey.KeyspaceID) (Route, error) {
	r, _, err := tab.LookupIndex(k)
	return r, err
}

// LookupIndex is Lookup that also returns the route's position in Routes(), so that a caller can keep
// per-keyrange data (request counters) in a slice beside the table: an index, not a map probe.
func (tab *Table) LookupIndex(k shardkey.KeyspaceID) (Route, int, error) {
	k = tab.Resolve(k)
	// Find the last keyrange that starts at or before k. The loop has a fixed trip count and a
	// conditional move instead of a data-dependent branch, so random keys do not stall on mispredictions.
	v := uint64(k)
	n := len(tab.starts)
	if n == 0 || tab.starts[0] > v {
		return Route{}, -1, ErrNoShard
	}
	base := 0
	for n > 1 {
		half := n >> 1
		if tab.starts[base+half] <= v {
			base += half
		}
		n -= half
	}
	lo := base + 1
	r := tab.routes[lo-1]
	if !r.Range.Contains(k) {
		return Route{}, -1, ErrNoShard
	}
	r.KeyspaceID = k
	if len(tab.frozen) != 0 {
		_, r.RelocationFrozen = tab.frozen[k]
	}
	return r, lo - 1, nil
}

// Routes returns every keyrange route in keyspace order. Callers must not modify the result.
func (tab *Table) Routes() []Route { return tab.routes }
