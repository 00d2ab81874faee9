// Package verify checks access tokens at the edge, so that an invalid token is refused before it costs
// a node anything and a valid one tells the router, with no lookup, whose data the request is about.
//
// The keys are the API nodes' published JWKS, fetched at start, refreshed periodically, and fetched
// again (at most once per MinRefetch) when a token names a key ID the router does not know yet, which
// is how a key rotation reaches it. Verification itself is internal/accesstoken's, the nodes' own code, so
// the edge and the nodes can never disagree on what a valid token is.
//
// An Ed25519 verification costs tens of microseconds; the same token is presented on every request of
// a session, so verified tokens are cached until they expire. The cache is keyed by the whole token
// (never a hash of it, so no collision can make one token pass for another), bounded, and emptied when
// a key disappears from the set.
package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/8thdegree/meridian/internal/accesstoken"
)

// ErrNoKeys is returned while no key set has been fetched yet: the router cannot tell a good token
// from a bad one, and answers 503 rather than guess.
var ErrNoKeys = errors.New("verify: no token keys yet")

// Source fetches the JWKS document from an API node.
type Source interface {
	JWKS(ctx context.Context) ([]byte, error)
}

// Config configures a Verifier.
type Config struct {
	// Issuer and Audience must match the API nodes' token configuration.
	Issuer, Audience string
	// Leeway tolerates clock skew between the nodes and the router.
	Leeway time.Duration
	// Refresh is how often the key set is fetched again; MinRefetch is the least time between two
	// fetches triggered by a token with an unknown key ID.
	Refresh, MinRefetch time.Duration
	// FetchTimeout bounds one fetch.
	FetchTimeout time.Duration
	// CacheSize bounds the verified tokens kept.
	CacheSize int
}

// DefaultConfig returns the defaults; Issuer and Audience have none.
func DefaultConfig() Config {
	return Config{
		Leeway:       30 * time.Second,
		Refresh:      5 * time.Minute,
		MinRefetch:   2 * time.Second,
		FetchTimeout: 2 * time.Second,
		CacheSize:    1 << 16,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Issuer == "":
		return errors.New("verify: Issuer is required")
	case c.Audience == "":
		return errors.New("verify: Audience is required")
	case c.Leeway < 0:
		return errors.New("verify: Leeway must not be negative")
	case c.Refresh <= 0 || c.MinRefetch <= 0 || c.FetchTimeout <= 0:
		return errors.New("verify: Refresh, MinRefetch and FetchTimeout must be positive")
	case c.CacheSize < 16:
		return errors.New("verify: CacheSize must be at least 16")
	}
	return nil
}

// Identity is what a verified token says, in the forms the router uses.
type Identity struct {
	Subject accesstoken.Subject
	// UserID is Subject.UserID in text, computed once per token.
	UserID string
}

// keyState is one key set in service; replaced whole.
type keyState struct {
	raw    []byte
	tokens *accesstoken.Tokens
	kids   map[string]struct{}
	cache  *cache
}

// Verifier verifies access tokens. It is safe for concurrent use.
type Verifier struct {
	cfg Config
	src Source
	log *slog.Logger
	now func() time.Time

	state atomic.Pointer[keyState]

	fetchMu      sync.Mutex // one fetch at a time
	lastOnDemand time.Time  // guarded by fetchMu: the last fetch for an unknown kid
}

// New returns a Verifier; Run fetches its keys. now may be nil (time.Now).
func New(cfg Config, src Source, log *slog.Logger, now func() time.Time) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("verify: nil Source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{cfg: cfg, src: src, log: log, now: now}, nil
}

// Ready reports whether a key set is in service.
func (v *Verifier) Ready() bool { return v.state.Load() != nil }

// Run fetches the key set until it has one (retrying with back-off), then refreshes it every Refresh,
// until ctx is done.
func (v *Verifier) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		wait := v.cfg.Refresh
		if err := v.fetch(ctx, false); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Without keys every token request is refused with 503: retry soon. With keys, the set in
			// service stays good until rotation retires a key, which takes longer than this.
			wait = min(backoff, v.cfg.Refresh)
			backoff = min(backoff*2, 5*time.Second)
			v.log.Warn("fetching the token key set failed", "err", err, "have_keys", v.Ready(), "retry_in", wait)
		} else {
			backoff = 100 * time.Millisecond
		}
		// Jitter spreads the fetches of many routers.
		wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Refresh fetches the key set now and puts it in service if it changed.
func (v *Verifier) Refresh(ctx context.Context) error { return v.fetch(ctx, false) }

// fetch gets the key set and puts it in service if it changed. onDemand fetches (an unknown kid) are
// skipped when the last fetch is more recent than MinRefetch.
func (v *Verifier) fetch(ctx context.Context, onDemand bool) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	if onDemand {
		// Anyone can send a token with a made-up kid: such fetches are rate-limited, the periodic
		// ones are not (they must not delay the first fetch of a real new key).
		if !v.lastOnDemand.IsZero() && v.now().Sub(v.lastOnDemand) < v.cfg.MinRefetch {
			return nil
		}
		v.lastOnDemand = v.now()
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.FetchTimeout)
	defer cancel()
	raw, err := v.src.JWKS(ctx)
	if err != nil {
		return err
	}
	return v.install(raw)
}

// install puts a JWKS document in service. The cache survives unless a key was retired: tokens signed
// with a retired key must stop passing at once.
func (v *Verifier) install(raw []byte) error {
	old := v.state.Load()
	if old != nil && string(old.raw) == string(raw) {
		return nil
	}
	ks, err := accesstoken.ParseJWKS(raw)
	if err != nil {
		return err
	}
	kids, err := keyIDs(raw)
	if err != nil {
		return err
	}
	// TTL is only used to issue tokens, which the router never does; Validate wants it positive.
	tokens, err := accesstoken.New(accesstoken.Config{Issuer: v.cfg.Issuer, Audience: v.cfg.Audience, TTL: time.Hour, Leeway: v.cfg.Leeway}, ks, v.now)
	if err != nil {
		return err
	}
	st := &keyState{raw: raw, tokens: tokens, kids: kids}
	retired := old == nil
	if old != nil {
		for k := range old.kids {
			if _, ok := kids[k]; !ok {
				retired = true
			}
		}
	}
	if retired {
		st.cache = newCache(v.cfg.CacheSize)
	} else {
		st.cache = old.cache
	}
	v.state.Store(st)
	v.log.Info("token key set in service", "keys", len(kids), "cache_reset", retired)
	return nil
}

// keyIDs lists the kids of the Ed25519 signing keys in a JWKS, the ones accesstoken.ParseJWKS keeps.
func keyIDs(raw []byte) (map[string]struct{}, error) {
	var set struct {
		Keys []struct {
			Kty, Crv, Kid, Use string
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("verify: JWKS: %w", err)
	}
	kids := make(map[string]struct{}, len(set.Keys))
	for _, k := range set.Keys {
		if k.Kty == "OKP" && k.Crv == "Ed25519" && (k.Use == "" || k.Use == "sig") {
			kids[k.Kid] = struct{}{}
		}
	}
	return kids, nil
}

// Verify checks tok and returns its identity. Errors wrap accesstoken.ErrInvalidToken or
// accesstoken.ErrExpired for a bad token, ErrNoKeys before the first key set.
func (v *Verifier) Verify(ctx context.Context, tok string) (Identity, error) {
	st := v.state.Load()
	if st == nil {
		return Identity{}, ErrNoKeys
	}
	now := v.now()
	if id, ok := st.cache.get(tok, now); ok {
		return id, nil
	}
	if kid, ok := headerKid(tok); ok {
		if _, known := st.kids[kid]; !known {
			// Perhaps a key the nodes started signing with since the last fetch.
			if err := v.fetch(ctx, true); err != nil {
				v.log.Warn("fetching the token key set for an unknown key ID failed", "err", err)
			}
			st = v.state.Load()
		}
	}
	sub, err := st.tokens.Verify(tok)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Subject: sub, UserID: sub.UserID.String()}
	if exp, ok := expiry(tok); ok {
		st.cache.put(tok, id, exp.Add(v.cfg.Leeway))
	}
	return id, nil
}

// headerKid reads the kid of a JWT's header without verifying anything.
func headerKid(tok string) (string, bool) {
	seg, _, ok := strings.Cut(tok, ".")
	if !ok || len(seg) > 1024 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", false
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(b, &h) != nil || h.Kid == "" {
		return "", false
	}
	return h.Kid, true
}

// expiry reads exp from a token that has just been verified.
func expiry(tok string) (time.Time, bool) {
	parts := strings.SplitN(tok, ".", 3)
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(c.Exp, 0), true
}

const cacheShards = 16

// cache holds verified tokens until they expire. Sharded, so that concurrent requests rarely meet on
// a lock; bounded, by dropping an arbitrary eighth of a full shard (Go's map order is random).
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cached
}

type cached struct {
	id    Identity
	until time.Time
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: max(size/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cached)
	}
	return c
}

func (c *cache) shard(tok string) *cacheShard {
	return &c.shards[maphash.String(c.seed, tok)%cacheShards]
}

func (c *cache) get(tok string, now time.Time) (Identity, bool) {
	s := c.shard(tok)
	s.mu.RLock()
	e, ok := s.m[tok]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return Identity{}, false
	}
	return e.id, true
}

func (c *cache) put(tok string, id Identity, until time.Time) {
	s := c.shard(tok)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		drop := max(c.perShard/8, 1)
		for k := range s.m {
			delete(s.m, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	s.m[tok] = cached{id: id, until: until}
}

// Len returns the number of cached tokens (for tests and metrics).
func (v *Verifier) Len() int {
	st := v.state.Load()
	if st == nil {
		return 0
	}
	n := 0
	for i := range st.cache.shards {
		s := &st.cache.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
