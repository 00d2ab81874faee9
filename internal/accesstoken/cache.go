package accesstoken

import (
	"hash/maphash"
	"sync"
	"time"
)

// verified caches the subjects of verified tokens until they expire. It is split into shards, each
// under its own lock, and bounded: a full shard drops an arbitrary entry (Go map iteration order is
// random), which is enough for a cache whose entries all expire within a token lifetime.
type verified struct {
	seed   maphash.Seed
	shards []verifiedShard
	per    int
}

type verifiedShard struct {
	mu sync.Mutex
	m  map[string]verifiedEntry
}

type verifiedEntry struct {
	s   Subject
	exp time.Time
}

const verifiedShards = 16

func newVerified(size int) *verified {
	if size <= 0 {
		return nil
	}
	v := &verified{seed: maphash.MakeSeed(), shards: make([]verifiedShard, verifiedShards), per: max(1, size/verifiedShards)}
	for i := range v.shards {
		v.shards[i].m = make(map[string]verifiedEntry)
	}
	return v
}

func (v *verified) shard(token string) *verifiedShard {
	return &v.shards[maphash.String(v.seed, token)%verifiedShards]
}

// get returns the subject of token if it was verified and has not expired by now (leeway applied by
// the caller).
func (v *verified) get(token string, now time.Time) (Subject, bool) {
	if v == nil {
		return Subject{}, false
	}
	sh := v.shard(token)
	sh.mu.Lock()
	e, ok := sh.m[token]
	if ok && !now.Before(e.exp) {
		delete(sh.m, token)
		ok = false
	}
	sh.mu.Unlock()
	return e.s, ok
}

func (v *verified) put(token string, s Subject, exp time.Time) {
	if v == nil {
		return
	}
	sh := v.shard(token)
	sh.mu.Lock()
	if len(sh.m) >= v.per {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[token] = verifiedEntry{s: s, exp: exp}
	sh.mu.Unlock()
}
