package shardkey

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock for generator tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.UnixMilli(1700000000000)} }

func entropyOf(id ID) uint64 {
	return uint64(id[15])<<32 | uint64(id[16])<<24 | uint64(id[17])<<16 | uint64(id[18])<<8 | uint64(id[19])
}

func mustNew(t testing.TB, g *Generator, kind Kind, owner KeyspaceID) ID {
	t.Helper()
	id, err := g.New(kind, owner)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestGeneratorLayout(t *testing.T) {
	clock := newFakeClock()
	g := NewGenerator(clock.Now, bytes.NewReader([]byte{1, 2, 3, 4, 5, 9, 9, 9, 9, 9}))
	owner := NewKeyspaceID(0x20, []byte("alice"))

	id := mustNew(t, g, KindJob, owner)
	if id.Kind() != KindJob || id.KeyspaceID() != owner || !id.Time().Equal(clock.Now()) || entropyOf(id) != 0x0102030405 {
		t.Fatalf("first ID = kind %v owner %v time %v entropy %#x", id.Kind(), id.KeyspaceID(), id.Time(), entropyOf(id))
	}
	// Same millisecond: the next value of the sequence, no new randomness.
	id2 := mustNew(t, g, KindUser, owner)
	if entropyOf(id2) != 0x0102030406 || !id2.Time().Equal(clock.Now()) || id2.Kind() != KindUser {
		t.Fatalf("second ID entropy %#x time %v", entropyOf(id2), id2.Time())
	}
	// Next millisecond: fresh randomness.
	clock.Add(time.Millisecond)
	id3 := mustNew(t, g, KindJob, owner)
	if entropyOf(id3) != 0x0909090909 || !id3.Time().Equal(clock.Now()) {
		t.Fatalf("third ID entropy %#x time %v", entropyOf(id3), id3.Time())
	}
}

func TestGeneratorClockStepsBack(t *testing.T) {
	clock := newFakeClock()
	g := NewGenerator(clock.Now, rand.NewChaCha8([32]byte{1}))
	owner := KeyspaceID(0x4000000000000001)
	a := mustNew(t, g, KindJob, owner)
	clock.Add(-time.Hour)
	b := mustNew(t, g, KindJob, owner)
	c := mustNew(t, g, KindJob, owner)
	if !(bytes.Compare(a[:], b[:]) < 0 && bytes.Compare(b[:], c[:]) < 0) {
		t.Fatalf("IDs not monotonic after the clock stepped back: %v %v %v", a, b, c)
	}
	if !b.Time().Equal(a.Time()) || !c.Time().Equal(a.Time()) {
		t.Errorf("IDs after the step back should keep the last millisecond %v: %v %v", a.Time(), b.Time(), c.Time())
	}
	clock.Add(time.Hour + time.Millisecond)
	d := mustNew(t, g, KindJob, owner)
	if !d.Time().Equal(clock.Now()) {
		t.Errorf("once the clock passes the last millisecond, IDs follow it again: %v, want %v", d.Time(), clock.Now())
	}
}

// maxEntropy always returns 0xff: every fresh sequence starts at its end.
type maxEntropy struct{}

func (maxEntropy) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xff
	}
	return len(p), nil
}

func TestGeneratorEntropyOverflow(t *testing.T) {
	clock := newFakeClock()
	g := NewGenerator(clock.Now, maxEntropy{})
	a := mustNew(t, g, KindAudit, 1)
	b := mustNew(t, g, KindAudit, 1)
	c := mustNew(t, g, KindAudit, 1)
	if entropyOf(a) != entropyMax {
		t.Fatalf("entropy = %#x", entropyOf(a))
	}
	ms := clock.Now().UnixMilli()
	if a.Time().UnixMilli() != ms || b.Time().UnixMilli() != ms+1 || c.Time().UnixMilli() != ms+2 {
		t.Errorf("overflowing sequences should move to the next millisecond: %v %v %v", a.Time(), b.Time(), c.Time())
	}
	if !(bytes.Compare(a[:], b[:]) < 0 && bytes.Compare(b[:], c[:]) < 0) {
		t.Error("IDs not monotonic across an overflow")
	}
	// The clock catching up with the borrowed milliseconds keeps order too.
	clock.Add(time.Millisecond)
	d := mustNew(t, g, KindAudit, 1)
	if bytes.Compare(c[:], d[:]) >= 0 {
		t.Error("IDs not monotonic after the clock caught up")
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestGeneratorErrors(t *testing.T) {
	clock := newFakeClock()
	g := NewGenerator(clock.Now, nil)
	for _, k := range []Kind{0, 9, 255} {
		if _, err := g.New(k, 1); !errors.Is(err, ErrInvalidID) {
			t.Errorf("New(kind %d) err = %v, want ErrInvalidID", k, err)
		}
	}
	for _, now := range []time.Time{time.UnixMilli(-1), time.UnixMilli(maxIDMillis + 1)} {
		g := NewGenerator(func() time.Time { return now }, nil)
		if _, err := g.New(KindUser, 1); !errors.Is(err, ErrInvalidID) {
			t.Errorf("New at %v: err = %v, want ErrInvalidID", now, err)
		}
	}
	// The last millisecond works, but nothing after its sequence.
	g = NewGenerator(func() time.Time { return time.UnixMilli(maxIDMillis) }, maxEntropy{})
	if _, err := g.New(KindUser, 1); err != nil {
		t.Errorf("New at the last millisecond: %v", err)
	}
	if _, err := g.New(KindUser, 1); !errors.Is(err, ErrInvalidID) {
		t.Errorf("New past the last millisecond: err = %v, want ErrInvalidID", err)
	}

	boom := errors.New("boom")
	g = NewGenerator(clock.Now, failingReader{boom})
	if _, err := g.New(KindUser, 1); !errors.Is(err, boom) {
		t.Errorf("failing entropy: err = %v, want it wrapped", err)
	}
	g = NewGenerator(clock.Now, bytes.NewReader([]byte{1, 2, 3}))
	if _, err := g.New(KindUser, 1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short entropy: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestGeneratorDefaults(t *testing.T) {
	g := NewGenerator(nil, nil)
	before := time.Now().Truncate(time.Millisecond)
	id := mustNew(t, g, KindUser, 0x2000000000000000)
	after := time.Now()
	if id.Time().Before(before) || id.Time().After(after) {
		t.Errorf("default clock: ID time %v not within [%v, %v]", id.Time(), before, after)
	}
	if id.KeyspaceID() != 0x2000000000000000 {
		t.Errorf("KeyspaceID() = %v", id.KeyspaceID())
	}
}

// TestGeneratorSortsByCreation: one owner and kind, a clock that advances
// every few IDs and sometimes steps back: the IDs come out strictly
// increasing in byte order (so in text order too).
func TestGeneratorSortsByCreation(t *testing.T) {
	clock := newFakeClock()
	g := NewGenerator(clock.Now, nil)
	rng := rand.New(rand.NewPCG(11, 12))
	owner := NewKeyspaceID(0x40, []byte("bob"))
	const n = 100_000
	ids := make([]ID, n)
	for i := range ids {
		switch rng.IntN(50) {
		case 0:
			clock.Add(time.Duration(rng.IntN(5)+1) * time.Millisecond)
		case 1:
			clock.Add(-time.Duration(rng.IntN(3)) * time.Millisecond)
		}
		ids[i] = mustNew(t, g, KindJob, owner)
	}
	for i := 1; i < n; i++ {
		if bytes.Compare(ids[i-1][:], ids[i][:]) >= 0 {
			t.Fatalf("ID %d (%v) does not sort after ID %d (%v)", i, ids[i], i-1, ids[i-1])
		}
		if ids[i-1].String() >= ids[i].String() {
			t.Fatalf("text of ID %d does not sort after ID %d", i, i-1)
		}
		if ids[i].KeyspaceID() != owner {
			t.Fatalf("ID %d: KeyspaceID() = %v, want %v", i, ids[i].KeyspaceID(), owner)
		}
	}
}

// TestGeneratorMixedOwnersSortByTime: across owners, order is by millisecond.
func TestGeneratorMixedOwnersSortByTime(t *testing.T) {
	clock := newFakeClock()
	g := NewGenerator(clock.Now, nil)
	owners := []KeyspaceID{0xff00000000000001, 0x2000000000000001, 0x4000000000000001}
	var ids []ID
	for i := 0; i < 3000; i++ {
		if i%7 == 0 {
			clock.Add(time.Millisecond)
		}
		owner := owners[i%len(owners)]
		id := mustNew(t, g, Kind(1+i%int(maxKind)), owner)
		if id.KeyspaceID() != owner {
			t.Fatalf("KeyspaceID() = %v, want %v", id.KeyspaceID(), owner)
		}
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i].Time().Before(ids[i-1].Time()) {
			t.Fatalf("ID %d is older than ID %d", i, i-1)
		}
	}
}

// TestGeneratorsUnique: two generators (two nodes) with the same clock and
// independent crypto/rand entropy make 100k IDs each for the same owner and
// kind, the worst case for collisions; all are distinct.
func TestGeneratorsUnique(t *testing.T) {
	clock := newFakeClock()
	g1, g2 := NewGenerator(clock.Now, nil), NewGenerator(clock.Now, nil)
	const n = 100_000
	seen := make(map[ID]struct{}, 2*n)
	for i := 0; i < n; i++ {
		if i%1000 == 0 {
			clock.Add(time.Millisecond)
		}
		for _, g := range []*Generator{g1, g2} {
			id := mustNew(t, g, KindUser, 0x2000000000000000)
			if _, dup := seen[id]; dup {
				t.Fatalf("duplicate ID %v after %d IDs", id, len(seen))
			}
			seen[id] = struct{}{}
		}
	}
}

// TestGeneratorConcurrent: one generator shared by goroutines hands out
// distinct IDs (run with -race to check the locking).
func TestGeneratorConcurrent(t *testing.T) {
	g := NewGenerator(newFakeClock().Now, nil)
	const workers, each = 4, 5000
	out := make([][]ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				id, err := g.New(KindJob, 0x6000000000000000)
				if err != nil {
					t.Error(err)
					return
				}
				out[w] = append(out[w], id)
			}
		}()
	}
	wg.Wait()
	all := slices.Concat(out...)
	slices.SortFunc(all, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	if len(slices.Compact(all)) != workers*each {
		t.Fatal("concurrent New returned duplicate IDs")
	}
	// Within each goroutine, its own IDs are increasing.
	for w := range workers {
		if !slices.IsSortedFunc(out[w], func(a, b ID) int { return bytes.Compare(a[:], b[:]) }) {
			t.Errorf("worker %d saw IDs out of order", w)
		}
	}
}
