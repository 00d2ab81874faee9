package topoedit

import (
	"errors"
	"fmt"
	"slices"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

var (
	// ErrShardExists: a shard of that name, or on that database, is already in the topology.
	ErrShardExists = errors.New("shard already in the topology")
	// ErrUnknownRegion: the region named is not in the topology.
	ErrUnknownRegion = errors.New("unknown region")
	// ErrUnknownShard: the shard named is not in the topology.
	ErrUnknownShard = errors.New("unknown shard")
	// ErrShardOwnsKeyRanges: a shard that still owns keyranges cannot be removed.
	ErrShardOwnsKeyRanges = errors.New("shard owns keyranges")
	// ErrNotAnAssignment: the keyrange is not exactly one assignment of the topology.
	ErrNotAnAssignment = errors.New("keyrange is not an assignment")
	// ErrNotServing: the assignment is frozen or moving (a move works on it).
	ErrNotServing = errors.New("keyrange is not serving")
	// ErrBadSplitPoint: the split point is outside the keyrange or on its edge.
	ErrBadSplitPoint = errors.New("bad split point")
)

// AddShard appends s to t, owning no keyrange. It refuses a duplicate name, a second shard on the same
// database (host, port and database name), an unknown region, and anything topology validation refuses.
func AddShard(t *topology.Topology, s topology.Shard) error {
	if _, ok := t.Shard(s.Name); ok {
		return fmt.Errorf("%w: %s", ErrShardExists, s.Name)
	}
	for _, o := range t.Shards {
		if sameDatabase(o.Conn, s.Conn) {
			return fmt.Errorf("%w: database %s:%d/%s is already shard %s", ErrShardExists, s.Conn.Host, s.Conn.Port, s.Conn.Database, o.Name)
		}
	}
	if _, ok := t.Region(s.Region); !ok {
		return fmt.Errorf("%w %q (regions: %s)", ErrUnknownRegion, s.Region, regionNames(t))
	}
	next := t.Clone()
	next.Shards = append(next.Shards, s)
	if err := next.Validate(); err != nil {
		return err
	}
	t.Shards = next.Shards
	return nil
}

// sameDatabase reports whether two connection settings name the same database.
func sameDatabase(a, b topology.Conn) bool {
	return a.Host == b.Host && a.Port == b.Port && a.Database == b.Database
}

// RemoveShard removes the named shard from t. It refuses a shard that owns any keyrange, whatever its
// state: its data would have no owner.
func RemoveShard(t *topology.Topology, name string) error {
	i := slices.IndexFunc(t.Shards, func(s topology.Shard) bool { return s.Name == name })
	if i < 0 {
		return fmt.Errorf("%w %q (shards: %s)", ErrUnknownShard, name, shardNames(t))
	}
	if owned := t.RangesOf(name); len(owned) > 0 {
		ranges := make([]string, len(owned))
		for j, a := range owned {
			ranges[j] = a.Range.String()
		}
		return fmt.Errorf("%w: %s owns %v; move them to another shard first", ErrShardOwnsKeyRanges, name, ranges)
	}
	next := t.Clone()
	next.Shards = slices.Delete(next.Shards, i, i+1)
	if err := next.Validate(); err != nil {
		return err
	}
	t.Shards = next.Shards
	return nil
}

// Split replaces the assignment of exactly kr with [kr.Start, at) and [at, kr.End) on the same shard,
// both serving. Nothing moves: the shard holds both halves' rows already. It refuses a keyrange that is
// not exactly one assignment, one that is not serving, and a point outside kr or on its start.
func Split(t *topology.Topology, kr shardkey.KeyRange, at shardkey.KeyspaceID) (lo, hi shardkey.KeyRange, err error) {
	i := slices.IndexFunc(t.KeyRanges, func(a topology.Assignment) bool { return a.Range == kr })
	if i < 0 {
		return lo, hi, notAnAssignment(t, kr)
	}
	a := t.KeyRanges[i]
	if a.State != topology.Serving {
		return lo, hi, fmt.Errorf("%w: %s on %s is %s (a move is working on it)", ErrNotServing, kr, a.Shard, a.State)
	}
	lo, hi, err = kr.SplitAt(at)
	if err != nil {
		return lo, hi, fmt.Errorf("%w: %s is not strictly inside %s (it must be above %s and below %s)", ErrBadSplitPoint, at, kr, shardkey.KeyspaceID(kr.Start), endText(kr))
	}
	next := t.Clone()
	next.KeyRanges = slices.Replace(next.KeyRanges, i, i+1,
		topology.Assignment{Range: lo, Shard: a.Shard, State: topology.Serving},
		topology.Assignment{Range: hi, Shard: a.Shard, State: topology.Serving})
	if err := next.Validate(); err != nil {
		return lo, hi, err
	}
	t.KeyRanges = next.KeyRanges
	return lo, hi, nil
}

func endText(kr shardkey.KeyRange) string {
	if kr.End == 0 {
		return "the end of the keyspace"
	}
	return shardkey.KeyspaceID(kr.End).String()
}

// notAnAssignment says how kr relates to the assignments it touches, so the operator can name the right one.
func notAnAssignment(t *topology.Topology, kr shardkey.KeyRange) error {
	var touching []string
	for _, a := range t.KeyRanges {
		if a.Range.ContainsRange(kr) {
			return fmt.Errorf("%w: %s lies inside %s on %s; split that keyrange", ErrNotAnAssignment, kr, a.Range, a.Shard)
		}
		if a.Range.Overlaps(kr) {
			touching = append(touching, a.Range.String()+" on "+a.Shard)
		}
	}
	if len(touching) > 0 {
		return fmt.Errorf("%w: %s spans %d assignments (%v); split one of them", ErrNotAnAssignment, kr, len(touching), touching)
	}
	return fmt.Errorf("%w: no keyrange of the topology overlaps %s", ErrNotAnAssignment, kr)
}

func regionNames(t *topology.Topology) []string {
	out := make([]string, len(t.Regions))
	for i, r := range t.Regions {
		out[i] = r.Name
	}
	return out
}

func shardNames(t *topology.Topology) []string {
	out := make([]string, len(t.Shards))
	for i, s := range t.Shards {
		out[i] = s.Name
	}
	return out
}
