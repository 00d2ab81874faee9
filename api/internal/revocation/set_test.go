package revocation

import (
	"sync"
	"testing"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

func family(t *testing.T, g *shardkey.Generator) shardkey.ID {
	t.Helper()
	id, err := g.New(shardkey.KindTokenFamily, shardkey.NewKeyspaceID(0x40, []byte(t.Name())))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSet(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s := NewSet(time.Hour, clock)
	g := shardkey.NewGenerator(nil, nil)
	a, b, old := family(t, g), family(t, g), family(t, g)

	if s.Revoked(a) || s.Revoked(shardkey.ID{}) {
		t.Fatal("an empty set revokes")
	}
	if n := s.Add(false, Entry{Family: a, At: now.Add(-time.Minute)}, Entry{Family: old, At: now.Add(-2 * time.Hour)}, Entry{At: now}); n != 1 {
		t.Errorf("Add counted %d new, want 1 (old and zero entries are ignored)", n)
	}
	if !s.Revoked(a) || s.Revoked(old) || s.Revoked(shardkey.ID{}) {
		t.Errorf("revoked: a %v, old %v, zero %v", s.Revoked(a), s.Revoked(old), s.Revoked(shardkey.ID{}))
	}
	if n := s.Add(false, Entry{Family: a, At: now}); n != 0 {
		t.Errorf("adding a known family counted %d", n)
	}
	// Learnt from another region, a is not this region's to offer; learnt here too, it is.
	if got := s.Local(time.Time{}); len(got) != 0 {
		t.Errorf("Local lists another region's entries: %v", got)
	}
	s.Add(true, Entry{Family: a, At: now.Add(-time.Minute)}, Entry{Family: b, At: now})
	got := s.Local(now.Add(-30 * time.Second))
	if len(got) != 1 || got[0].Family != b {
		t.Errorf("Local since 30 s ago: %v, want only b", got)
	}
	if got := s.Local(time.Time{}); len(got) != 2 {
		t.Errorf("Local since ever: %v, want a and b", got)
	}
	// An hour later a's tokens have all expired.
	now = now.Add(time.Hour - 30*time.Second)
	s.Prune()
	if s.Revoked(a) || !s.Revoked(b) || s.Len() != 1 {
		t.Errorf("after the keep window: a %v b %v len %d", s.Revoked(a), s.Revoked(b), s.Len())
	}
}

func TestSetConcurrentReadersAndWriters(t *testing.T) {
	s := NewSet(time.Hour, nil)
	g := shardkey.NewGenerator(nil, nil)
	ids := make([]shardkey.ID, 200)
	for i := range ids {
		ids[i] = family(t, g)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(ids); i += 4 {
				s.Add(w%2 == 0, Entry{Family: ids[i], At: time.Now()})
			}
		})
		wg.Go(func() {
			for range 1000 {
				_ = s.Revoked(ids[w])
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		if !s.Revoked(id) {
			t.Fatalf("%s lost", id)
		}
	}
}

// A lookup is what every authenticated request pays.
func BenchmarkRevoked(b *testing.B) {
	s := NewSet(time.Hour, nil)
	g := shardkey.NewGenerator(nil, nil)
	var probe shardkey.ID
	for i := range 1000 {
		id, _ := g.New(shardkey.KindTokenFamily, shardkey.KeyspaceID(uint64(i)<<8))
		s.Add(true, Entry{Family: id, At: time.Now()})
		probe = id
	}
	b.ReportAllocs()
	for b.Loop() {
		if !s.Revoked(probe) {
			b.Fatal("lost")
		}
	}
}

func TestRevokedDoesNotAllocate(t *testing.T) {
	s := NewSet(time.Hour, nil)
	id := family(t, shardkey.NewGenerator(nil, nil))
	s.Add(true, Entry{Family: id, At: time.Now()})
	if n := testing.AllocsPerRun(100, func() { _ = s.Revoked(id) }); n != 0 {
		t.Errorf("Revoked allocates %.0f times per call", n)
	}
}
