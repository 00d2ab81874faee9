package index

import (
	"sync/atomic"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Live is the current snapshot of an index: queries Load it and search without a lock while a
// refresher swaps in the next one. The zero value holds no snapshot (Load returns nil, which
// searches as empty).
type Live struct {
	p atomic.Pointer[Index]
}

// NewLive returns a Live holding ix.
func NewLive(ix *Index) *Live {
	l := &Live{}
	l.p.Store(ix)
	return l
}

// Load returns the current snapshot.
func (l *Live) Load() *Index { return l.p.Load() }

// Swap makes ix the current snapshot and returns the previous one.
func (l *Live) Swap(ix *Index) *Index { return l.p.Swap(ix) }

// Apply derives the next snapshot from the current one with With and swaps it in, retrying when
// another writer swapped in between, so concurrent writers lose no change. It fails, swapping
// nothing, when With fails or when there is no current snapshot.
func (l *Live) Apply(upserts []Item, deletes []shardkey.ID) (*Index, error) {
	for {
		cur := l.p.Load()
		next, err := cur.With(upserts, deletes)
		if err != nil {
			return nil, err
		}
		if l.p.CompareAndSwap(cur, next) {
			return next, nil
		}
	}
}
