package shardpool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

var (
	// ErrWrongRegion is wrapped by the *WrongRegionError of ReadShard and WriteShard: the data is homed
	// in another region than the caller's.
	ErrWrongRegion = errors.New("shardpool: the data is homed in another region")
	// ErrFrozen is returned by WriteShard when the keyrange stayed frozen for longer than the hold allows.
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

// Frozen reports whether the keyrange is frozen for a cutover: its writes must wait for the flip (the
// source is no longer written to and the target not yet), while reads go on at the current owner. It is
// the one definition of frozen that WriteShard and every other writer (move verifiers, workers) share.
// A ksid whose relocation is frozen (a pin's cutover, topology.Route.RelocationFrozen) is frozen the
// same way, for that one ksid.
func (r Routed) Frozen() bool { return r.Route.State == topology.Frozen || r.Route.RelocationFrozen }

// ReadShard returns the shard that holds k's data, which must be homed in region. It answers at once:
// reads are never held. Errors: ErrNoTopology, topology.ErrNoShard for a ksid no keyrange covers, and a
// *WrongRegionError (wrapping ErrWrongRegion, returned with the Routed found) for another region's data.
func (m *Manager) ReadShard(k shardkey.KeyspaceID, region string) (Routed, error) {
	s := m.cur.Load()
	r, i, err := s.routeIn(k, region)
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
	var deadline <-chan time.Time
	for {
		// The route and the channel come from one snapshot: a topology applied after the Load has
		// already closed s.changed, so no flip can slip between the lookup and the wait.
		s := m.cur.Load()
		r, i, err := s.routeIn(k, region)
		if err != nil && !(r.Route.RelocationFrozen && errors.Is(err, ErrWrongRegion)) {
			return r, err
		}
		// A pin's cutover holds the user's writes in every region: a write replayed here by the
		// router just after the flip, before this node applied it, waits for the flip instead of
		// being sent back to the old region.
		if !r.Frozen() {
			// Counted where it goes: a held write counts once, at the shard it is released to.
			s.counters[i].writes.Add(1)
			return r, nil
		}
		if deadline == nil {
			if maxHold <= 0 {
				return r, fmt.Errorf("%w: keyrange %s (ksid %s)", ErrFrozen, r.Route.Range, k)
			}
			t := time.NewTimer(maxHold)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-s.changed:
		case <-deadline:
			return r, fmt.Errorf("%w: keyrange %s (ksid %s) after %s", ErrFrozen, r.Route.Range, k, maxHold)
		case <-ctx.Done():
			return r, fmt.Errorf("shardpool: write held for frozen keyrange %s: %w", r.Route.Range, ctx.Err())
		}
	}
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
