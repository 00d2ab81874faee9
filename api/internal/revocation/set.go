package revocation

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Entry is one revoked session.
type Entry struct {
	Family shardkey.ID
	// At is when the family was revoked (the database's revoked_at).
	At time.Time
}

// Set holds the revoked families whose tokens may still be unexpired. Lookups take no lock: they
// read an immutable map that Add replaces (revocations are rare next to lookups, which happen on
// every authenticated request).
type Set struct {
	keep time.Duration // how long after its revocation a family is kept
	now  func() time.Time

	mu  sync.Mutex // serialises writers
	cur atomic.Pointer[snapshot]
}

type snapshot struct {
	m map[shardkey.ID]member
}

type member struct {
	at    time.Time
	local bool // learnt in this region (its Redis or its shards), not from another region
}

// NewSet returns a Set that keeps each family for keep after its revocation (the access-token
// lifetime plus the verifiers' leeway). now may be nil.
func NewSet(keep time.Duration, now func() time.Time) *Set {
	if now == nil {
		now = time.Now
	}
	s := &Set{keep: keep, now: now}
	s.cur.Store(&snapshot{m: map[shardkey.ID]member{}})
	return s
}

// Revoked reports whether fam was revoked. The zero ID (a token without a session) is never revoked.
func (s *Set) Revoked(fam shardkey.ID) bool {
	if fam.IsZero() {
		return false
	}
	_, ok := s.cur.Load().m[fam]
	return ok
}

// Len is the number of families held.
func (s *Set) Len() int { return len(s.cur.Load().m) }

// Add records entries; local says they were learnt in this node's region. It returns how many were
// new. Entries older than the keep window are ignored; a copy made for a change drops expired members.
func (s *Set) Add(local bool, entries ...Entry) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load().m
	oldest := s.now().Add(-s.keep)
	var next map[shardkey.ID]member // copied on the first change
	n := 0
	for _, e := range entries {
		if e.Family.IsZero() || !e.At.After(oldest) {
			continue
		}
		in := old
		if next != nil {
			in = next
		}
		m, ok := in[e.Family]
		if ok && (m.local || !local) {
			continue
		}
		if next == nil {
			next = make(map[shardkey.ID]member, len(old)+len(entries))
			for f, m := range old {
				if m.at.After(oldest) {
					next[f] = m
				}
			}
		}
		if ok {
			m.local = true
		} else {
			m = member{at: e.At, local: local}
			n++
		}
		next[e.Family] = m
	}
	if next != nil {
		s.cur.Store(&snapshot{m: next})
	}
	return n
}

// Prune drops the families whose tokens have all expired.
func (s *Set) Prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load().m
	oldest := s.now().Add(-s.keep)
	next := make(map[shardkey.ID]member, len(old))
	for f, m := range old {
		if m.at.After(oldest) {
			next[f] = m
		}
	}
	if len(next) != len(old) {
		s.cur.Store(&snapshot{m: next})
	}
}

// Local returns the families learnt in this region and revoked after since, for other regions.
func (s *Set) Local(since time.Time) []Entry {
	var out []Entry
	for f, m := range s.cur.Load().m {
		if m.local && m.at.After(since) {
			out = append(out, Entry{Family: f, At: m.at})
		}
	}
	return out
}
