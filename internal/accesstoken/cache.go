package accesstoken

import (
	"hash/maphash"
	"sync"
	"time"
)

// verified caches verified tokens until they expire. It is split into shards, each under its own
// lock, so that concurrent requests rarely meet on one; a hit takes only a read lock. It is bounded: a
// full shard drops an arbitrary eighth of its entries (Go's map order is random), which is enough for a
// cache whose entries all expire within a token lifetime, and spreads the cost of eviction. Expired
// entries are not removed on read (that would need the write lock); eviction removes them.
type verified struct {
	seed   maphash.Seed
	per    int
	shards [verifiedShards]verifiedShard
}

type verifiedShard struct {
	mu sync.RWMutex
	m  map[string]Token
}

const verifiedShards = 16

// newVerified returns a cache of about size tokens, or nil (no cache) when size is 0.
func newVerified(size int) *verified {
	if size <= 0 {
		return nil
	}
	v := &verified{seed: maphash.MakeSeed(), per: max(1, size/verifiedShards)}
	for i := range v.shards {
		v.shards[i].m = make(map[string]Token)
	}
	return v
}

func (v *verified) shard(token string) *verifiedShard {
	return &v.shards[maphash.String(v.seed, token)%verifiedShards]
}

// get returns token if it was verified and has not expired by now (leeway applied by the caller).
func (v *verified) get(token string, now time.Time) (Token, bool) {
	if v == nil {
		return Token{}, false
	}
	sh := v.shard(token)
	sh.mu.RLock()
	t, ok := sh.m[token]
	sh.mu.RUnlock()
	if !ok || !now.Before(t.Expires) {
		return Token{}, false
	}
	return t, true
}

func (v *verified) put(token string, t Token) {
	if v == nil {
		return
	}
	sh := v.shard(token)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) >= v.per {
		drop := max(v.per/8, 1)
		for k := range sh.m {
			delete(sh.m, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	sh.m[token] = t
}

func (v *verified) len() int {
	if v == nil {
		return 0
	}
	n := 0
	for i := range v.shards {
		sh := &v.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
