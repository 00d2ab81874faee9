package shardpool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

var (
	// ErrWrongRegion is wrapped by the *WrongRegionError of ReadShard and WriteShard: the data is homed
	// in another region than the caller's.
	ErrWrongRegion = errors.New("shardpool: the data is homed in another region")
	// ErrFrozen is returned by ReadShard, WriteShard and ReadRegion when the keyrange stayed frozen for
	// longer than the hold allows.
	ErrFrozen = errors.New("shardpool: the keyrange stayed frozen for a cutover longer than the hold")
)

// WrongRegionError names the region that holds a keyspace ID's data, so that an API node can tell its
// caller where to replay the request. It wraps ErrWrongRegion.
type WrongRegionError struct {
	KeyspaceID shardkey.KeyspaceID
	// Region holds the data; Want is the region the caller serves.
	Region, Want string
}

func (e *WrongRegionError) Error() string {
	return fmt.Sprintf("shardpool: ksid %s is homed in region %s, not %s", e.KeyspaceID, e.Region, e.Want)
}

func (e *WrongRegionError) Unwrap() error { return ErrWrongRegion }

// Frozen reports whether the keyrange is frozen for a cutover: neither its reads nor its writes may
// go on until the next topology (the source is no longer written to and the target not yet, and a read
// at the source could miss a write already taken at the target by a node that applied the flip first).
// It is the one definition of frozen that ReadShard, WriteShard, ReadRegion and every other writer
// (move verifiers, workers) share. A ksid whose relocation is frozen (a pin's cutover,
// topology.Route.RelocationFrozen) is frozen the same way, for that one ksid.
func (r Routed) Frozen() bool { return r.Route.State == topology.Frozen || r.Route.RelocationFrozen }

// mustHold reports whether a request routed to r (with err) must wait for the next topology: its keyrange
// or its relocation is frozen. A pin's cutover holds the user's requests in every region: one the
// router replays in the target region just after the flip, before this node applied it, waits for the
// flip there instead of being sent back to the old region.
func mustHold(r Routed, err error) bool {
	if err != nil {
		return r.Route.RelocationFrozen && errors.Is(err, ErrWrongRegion)
	}
	return r.Frozen()
}

// ReadShard returns the shard that holds k's data, which must be homed in region. While k's keyrange
// is frozen it holds the read exactly as WriteShard holds a write (see there): the read goes on at the
// keyrange's owner once the next topology is applied, and gives up with ErrFrozen after maxHold (at
// once when maxHold <= 0) or with ctx's error. Other errors: ErrNoTopology, topology.ErrNoShard for a
// ksid no keyrange covers, and a *WrongRegionError (wrapping ErrWrongRegion, returned with the Routed
// found) for another region's data, held or not.
func (m *Manager) ReadShard(ctx context.Context, k shardkey.KeyspaceID, region string, maxHold time.Duration) (Routed, error) {
	s := m.cur.Load()
	r, i, err := s.routeIn(k, region)
	if mustHold(r, err) {
		s, r, i, err = m.hold(ctx, k, region, maxHold, "read")
	}
	if err == nil {
		s.counters[i].reads.Add(1)
	}
	return r, err
}

// WriteShard is ReadShard for writes. While k's keyrange is frozen it holds the write: every time the
// manager applies a new topology the held writes wake up and route again, so the write goes on as soon
// as the keyrange serves again, at its new owner after a flip or at the same shard after an abort. It
// gives up with ErrFrozen after maxHold (at once when maxHold <= 0), and with ctx's error when ctx ends
// first; both come with the frozen Routed. A keyrange that moved to another region is a
// *WrongRegionError, held or not.
func (m *Manager) WriteShard(ctx context.Context, k shardkey.KeyspaceID, region string, maxHold time.Duration) (Routed, error) {
	s := m.cur.Load()
	r, i, err := s.routeIn(k, region)
	if mustHold(r, err) {
		s, r, i, err = m.hold(ctx, k, region, maxHold, "write")
	}
	if err == nil {
		// Counted where it goes: a held write counts once, at the shard it is released to.
		s.counters[i].writes.Add(1)
	}
	return r, err
}

// hold waits until k's keyrange is no longer frozen and returns the snapshot it routed in, the route
// and its index there. It is the one hold of ReadShard and WriteShard, kept off their path for a
// keyrange that serves (no timer, no allocation there).
func (m *Manager) hold(ctx context.Context, k shardkey.KeyspaceID, region string, maxHold time.Duration, what string) (*state, Routed, int, error) {
	var deadline <-chan time.Time
	for {
		// The route and the channel come from one snapshot: a topology applied after the Load has
		// already closed s.changed, so no flip can slip between the lookup and the wait.
		s := m.cur.Load()
		r, i, err := s.routeIn(k, region)
		if !mustHold(r, err) {
			return s, r, i, err
		}
		if deadline == nil {
			if maxHold <= 0 {
				return s, r, i, fmt.Errorf("%w: keyrange %s (ksid %s)", ErrFrozen, r.Route.Range, k)
			}
			t := time.NewTimer(maxHold)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-s.changed:
		case <-deadline:
			return s, r, i, fmt.Errorf("%w: keyrange %s (ksid %s) after %s", ErrFrozen, r.Route.Range, k, maxHold)
		case <-ctx.Done():
			return s, r, i, fmt.Errorf("shardpool: %s held for frozen keyrange %s: %w", what, r.Route.Range, ctx.Err())
		}
	}
}

// RegionView is one snapshot of a region's shards for a read that fans out over them: Table and
// Targets come from the same topology version, so the keyranges a shard is queried for (its
// assignments in Table) are the ones it owns in that version.
type RegionView struct {
	Table   *topology.Table
	Targets []Target // the region's shards, in topology order
}

// ReadRegion returns the region's shards for a fan-out read (Scatter). While a keyrange homed in the
// region is frozen it holds, as ReadShard holds a read of that keyrange: a fan-out that queried the
// source for a frozen keyrange could miss what a node that already applied the flip wrote at the
// target, and one that queried the target would see a copy the target does not own yet. It goes on
// with the first topology in which no keyrange of the region is frozen, and gives up with ErrFrozen
// after maxHold (at once when maxHold <= 0), or with ctx's error; ErrNoTopology before the first
// Apply. Fan-outs are not counted in KeyRangeCounts.
func (m *Manager) ReadRegion(ctx context.Context, region string, maxHold time.Duration) (RegionView, error) {
	var deadline <-chan time.Time
	for {
		s := m.cur.Load()
		if s == nil {
			return RegionView{}, ErrNoTopology
		}
		if !slices.Contains(s.frozenIn, region) {
			v := RegionView{Table: s.table}
			for _, t := range s.targets {
				if t.Region == region {
					v.Targets = append(v.Targets, t)
				}
			}
			return v, nil
		}
		if deadline == nil {
			if maxHold <= 0 {
				return RegionView{}, fmt.Errorf("%w: a keyrange of region %s", ErrFrozen, region)
			}
			t := time.NewTimer(maxHold)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-s.changed:
		case <-deadline:
			return RegionView{}, fmt.Errorf("%w: a keyrange of region %s, after %s", ErrFrozen, region, maxHold)
		case <-ctx.Done():
			return RegionView{}, fmt.Errorf("shardpool: fan-out held for a frozen keyrange of region %s: %w", region, ctx.Err())
		}
	}
}

// frozenRegions lists the regions of t with a frozen keyrange.
func frozenRegions(t *topology.Topology) []string {
	var out []string
	for _, a := range t.KeyRanges {
		if a.State != topology.Frozen {
			continue
		}
		if sh, ok := t.Shard(a.Shard); ok && !slices.Contains(out, sh.Region) {
			out = append(out, sh.Region)
		}
	}
	return out
}

// route looks k up in the snapshot s, which may be nil before the first Apply. The index is the route's
// in s.table.Routes() (and s.counters).
func (s *state) route(k shardkey.KeyspaceID) (Routed, int, error) {
	if s == nil {
		return Routed{}, -1, ErrNoTopology
	}
	r, i, err := s.table.LookupIndex(k)
	if err != nil {
		return Routed{}, -1, err
	}
	p := s.pools[r.Shard.Name]
	return Routed{Target: Target{Shard: r.Shard.Name, Region: r.Shard.Region, Pool: p.pool}, Route: r}, i, nil
}

func (s *state) routeIn(k shardkey.KeyspaceID, region string) (Routed, int, error) {
	r, i, err := s.route(k)
	if err == nil && r.Region != region {
		return r, i, &WrongRegionError{KeyspaceID: k, Region: r.Region, Want: region}
	}
	return r, i, err
}
