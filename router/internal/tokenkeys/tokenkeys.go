// Package tokenkeys follows the token keys the API nodes publish, so that the edge checks access tokens
// itself: an invalid token is refused before it costs a node anything, and a valid one tells the router,
// with no lookup, whose data the request is about.
//
// The keys are the nodes' published JWKS, fetched at start, refreshed periodically, and fetched again
// (at most once per MinRefetch) when a token names a key ID the router does not know yet
// (accesstoken.ErrUnknownKey), which is how a key rotation reaches it. Verification itself, and its
// cache of verified tokens, is internal/accesstoken's, the nodes' own code, so the edge and the nodes
// can never disagree on what a valid token is. The cache survives a key set that only adds keys and is
// emptied when a key disappears from the set.
package tokenkeys

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/8thdegree/meridian/internal/accesstoken"
)

// ErrNoKeys is returned while no key set has been fetched yet: the router cannot tell a good token
// from a bad one, and answers 503 rather than guess.
var ErrNoKeys = errors.New("tokenkeys: no token keys yet")

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
		return errors.New("tokenkeys: Issuer is required")
	case c.Audience == "":
		return errors.New("tokenkeys: Audience is required")
	case c.Leeway < 0:
		return errors.New("tokenkeys: Leeway must not be negative")
	case c.Refresh <= 0 || c.MinRefetch <= 0 || c.FetchTimeout <= 0:
		return errors.New("tokenkeys: Refresh, MinRefetch and FetchTimeout must be positive")
	case c.CacheSize < 16:
		return errors.New("tokenkeys: CacheSize must be at least 16")
	}
	return nil
}

// keyState is one key set in service, with its verifier; replaced whole.
type keyState struct {
	raw      []byte
	verifier *accesstoken.Verifier
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
		return nil, errors.New("tokenkeys: nil Source")
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

// install puts a JWKS document in service. The verified tokens are kept unless a key was retired:
// tokens signed with a retired key must stop passing at once (accesstoken.Verifier.WithKeys).
func (v *Verifier) install(raw []byte) error {
	old := v.state.Load()
	if old != nil && string(old.raw) == string(raw) {
		return nil
	}
	ks, err := accesstoken.ParseJWKS(raw)
	if err != nil {
		return err
	}
	var verifier *accesstoken.Verifier
	if old == nil {
		verifier, err = accesstoken.NewVerifier(accesstoken.Config{Issuer: v.cfg.Issuer, Audience: v.cfg.Audience, Leeway: v.cfg.Leeway, CacheSize: v.cfg.CacheSize}, ks, v.now)
	} else {
		verifier, err = old.verifier.WithKeys(ks)
	}
	if err != nil {
		return err
	}
	v.state.Store(&keyState{raw: raw, verifier: verifier})
	v.log.Info("token key set in service", "keys", ks.Len(), "cache_reset", old == nil || !ks.Covers(old.verifier.Keys()))
	return nil
}

// Verify checks tok and returns it verified. Errors wrap accesstoken.ErrInvalidToken or
// accesstoken.ErrExpired for a bad token, ErrNoKeys before the first key set.
func (v *Verifier) Verify(ctx context.Context, tok string) (accesstoken.Token, error) {
	st := v.state.Load()
	if st == nil {
		return accesstoken.Token{}, ErrNoKeys
	}
	t, err := st.verifier.VerifyToken(tok)
	if errors.Is(err, accesstoken.ErrUnknownKey) {
		// Perhaps a key the nodes started signing with since the last fetch.
		if err := v.fetch(ctx, true); err != nil {
			v.log.Warn("fetching the token key set for an unknown key ID failed", "err", err)
		}
		if now := v.state.Load(); now != st {
			t, err = now.verifier.VerifyToken(tok)
		}
	}
	return t, err
}

// Revoke makes Verify refuse tok from now until it expires: a node refused it because its session
// ended (see accesstoken.Verifier.Revoke).
func (v *Verifier) Revoke(tok string) {
	if st := v.state.Load(); st != nil {
		st.verifier.Revoke(tok)
	}
}

// Len returns the number of cached tokens (for tests and metrics).
func (v *Verifier) Len() int {
	st := v.state.Load()
	if st == nil {
		return 0
	}
	return st.verifier.Len()
}
