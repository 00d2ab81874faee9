package shardkey

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"time"
)

// Generator makes entity IDs. It is safe for concurrent use; one per process
// is the intended use.
//
// Within one millisecond it hands out consecutive entropy values starting from
// a random one (like a monotonic ULID generator), so the IDs of one generator
// never repeat and, for one owner and kind, sort strictly by creation. Across
// generators, uniqueness rests on the random start: two nodes collide only if
// they make an ID for the same owner and kind in the same millisecond and
// their 40-bit sequences overlap (see docs/keyspace.md).
type Generator struct {
	now     func() time.Time
	entropy io.Reader

	mu          sync.Mutex
	lastMillis  uint64 // the millisecond of the last ID; never goes backwards
	lastEntropy uint64
	started     bool
	buf         [5]byte
}

// NewGenerator returns a generator reading the clock from now and randomness
// from entropy. A nil now means time.Now, a nil entropy crypto/rand.Reader;
// tests pass a fixed clock and a deterministic reader.
func NewGenerator(now func() time.Time, entropy io.Reader) *Generator {
	if now == nil {
		now = time.Now
	}
	if entropy == nil {
		entropy = rand.Reader
	}
	return &Generator{now: now, entropy: entropy}
}

// New returns a new ID of the given kind owned by owner.
//
// If the clock steps back, the generator keeps using the last millisecond it
// used, so its IDs stay monotonic. If one millisecond's 40-bit sequence is
// exhausted, it moves on to the next millisecond with a fresh random start.
// It fails for an unknown kind, a clock outside 1970..10889, or an entropy
// source that fails.
func (g *Generator) New(kind Kind, owner KeyspaceID) (ID, error) {
	if !kind.Valid() {
		return ID{}, fmt.Errorf("%w: unknown kind %d", ErrInvalidID, uint8(kind))
	}
	// Read the clock outside the lock: a slow clock function must not
	// serialise callers more than the bookkeeping below already does.
	ms := g.now().UnixMilli()
	if ms < 0 || ms > maxIDMillis {
		return ID{}, fmt.Errorf("%w: clock reads %d ms, outside the 48-bit id time range", ErrInvalidID, ms)
	}

	g.mu.Lock()
	defer g.mu.Unlock()

	m := uint64(ms)
	if g.started && m <= g.lastMillis {
		if g.lastEntropy < entropyMax {
			g.lastEntropy++
			return makeID(g.lastMillis, owner, kind, g.lastEntropy), nil
		}
		// Sequence exhausted: borrow the next millisecond.
		m = g.lastMillis + 1
		if m > maxIDMillis {
			return ID{}, fmt.Errorf("%w: id time range exhausted", ErrInvalidID)
		}
	}
	if _, err := io.ReadFull(g.entropy, g.buf[:]); err != nil {
		return ID{}, fmt.Errorf("shardkey: reading id entropy: %w", err)
	}
	e := uint64(g.buf[0])<<32 | uint64(g.buf[1])<<24 | uint64(g.buf[2])<<16 | uint64(g.buf[3])<<8 | uint64(g.buf[4])
	g.lastMillis, g.lastEntropy, g.started = m, e, true
	return makeID(m, owner, kind, e), nil
}
