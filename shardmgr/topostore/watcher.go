package topostore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Where the copy in service came from, as reported by Watcher.Source.
const (
	SourceConsul = "consul"
	SourceDisk   = "disk"
)

// ErrAlreadyRunning is returned by a second call to Watcher.Run.
var ErrAlreadyRunning = errors.New("topostore: watcher already running")

// Consul caps a blocking query's wait at ten minutes.
const maxWaitTime = 10 * time.Minute

// readTimeout bounds a non-blocking read (WaitIndex 0) and is added on top of a blocking query's wait,
// so an agent that stops answering without closing the connection (a black-holed network) is noticed
// and, at start, the disk copy is served instead of nothing.
const readTimeout = 10 * time.Second

// WatcherConfig configures a Watcher. Zero values take the defaults noted per field.
type WatcherConfig struct {
	// Key is the Consul KV key of the document; DefaultKey if empty.
	Key string
	// CachePath is the file holding the disk copy; "" keeps no disk copy.
	CachePath string
	// WaitTime is how long one blocking query waits for a change; default 5m, at most 10m.
	WaitTime time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered wait after a failed read;
	// defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MinInterval is the least time between two reads that brought nothing new, so that an index
	// that keeps moving without a new document (or a Consul that answers blocking queries at once)
	// cannot make the loop spin; default 100ms. A read that brings a new version is followed at once
	// by the next one, so delivery latency does not pay for this.
	MinInterval time.Duration
	// AllowStale lets any Consul server answer, not only the leader. It spreads the load of many
	// watchers; a stale answer is safe because an older Version is never taken.
	AllowStale bool
	// Logger receives the watcher's events; nil discards them.
	Logger *slog.Logger
}

// DefaultWatcherConfig returns the configuration NewWatcher applies to zero fields.
func DefaultWatcherConfig() WatcherConfig {
	return WatcherConfig{
		Key:         DefaultKey,
		WaitTime:    5 * time.Minute,
		MinBackoff:  250 * time.Millisecond,
		MaxBackoff:  30 * time.Second,
		MinInterval: 100 * time.Millisecond,
	}
}

func (c WatcherConfig) withDefaults() WatcherConfig {
	d := DefaultWatcherConfig()
	if c.Key == "" {
		c.Key = d.Key
	}
	if c.WaitTime == 0 {
		c.WaitTime = d.WaitTime
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = d.MinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(d.MaxBackoff, c.MinBackoff)
	}
	if c.MinInterval == 0 {
		c.MinInterval = d.MinInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first field that is out of range, after defaults are applied.
func (c WatcherConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.WaitTime < 0 || c.WaitTime > maxWaitTime:
		return fmt.Errorf("topostore: WatcherConfig.WaitTime %v must be between 0 and %v", c.WaitTime, maxWaitTime)
	case c.MinBackoff < 0:
		return fmt.Errorf("topostore: WatcherConfig.MinBackoff %v must not be negative", c.MinBackoff)
	case c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("topostore: WatcherConfig.MaxBackoff %v must not be below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	case c.MinInterval < 0:
		return fmt.Errorf("topostore: WatcherConfig.MinInterval %v must not be negative", c.MinInterval)
	}
	return nil
}

// snapshot is the copy in service with where it came from; it is replaced whole, never modified.
type snapshot struct {
	topo   *topology.Topology
	source string
	raw    []byte // the document as stored, to skip rewriting an identical disk copy
}

// Watcher follows the topology document with Consul blocking queries and serves the last good copy.
type Watcher struct {
	kv  *api.KV
	cfg WatcherConfig
	log *slog.Logger

	cur       atomic.Pointer[snapshot]
	ready     chan struct{}
	readyOnce sync.Once
	running   atomic.Bool

	mu     sync.Mutex // guards subs and closed
	subs   map[*subscriber]struct{}
	closed bool

	// Touched only by the Run goroutine.
	lastSeen uint64 // ModifyIndex of the last document examined, good or bad
	absent   bool   // the key was found absent and this was logged
}

// NewWatcher returns a Watcher for cfg; call Run to start it.
func NewWatcher(client *api.Client, cfg WatcherConfig) (*Watcher, error) {
	if client == nil {
		return nil, errors.New("topostore: NewWatcher: nil Consul client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Watcher{
		kv:    client.KV(),
		cfg:   cfg,
		log:   cfg.Logger.With("key", cfg.Key),
		ready: make(chan struct{}),
		subs:  make(map[*subscriber]struct{}),
	}, nil
}

// Current returns the topology in service, or nil before the first good copy. It never calls Consul.
// The value is shared by every reader: treat it as read-only and Clone it to edit.
func (w *Watcher) Current() *topology.Topology {
	if s := w.cur.Load(); s != nil {
		return s.topo
	}
	return nil
}

// Source reports where the copy in service came from: SourceConsul, SourceDisk, or "" before the
// first copy.
func (w *Watcher) Source() string {
	if s := w.cur.Load(); s != nil {
		return s.source
	}
	return ""
}

// Ready is closed once a first copy, from Consul or from disk, is in service.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Run follows the document until ctx is done, then closes every subscription and returns nil. It may
// be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer w.closeSubs()

	var (
		index    uint64 // WaitIndex of the next query; 0 asks for the current state without blocking
		failures int
		first    = true
	)
	for ctx.Err() == nil {
		start := time.Now()
		pair, meta, err := w.read(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			// As Consul's watch package does after an error: the next read starts afresh, without
			// blocking, so a recovered (or restarted, or restored) Consul is read at once.
			index = 0
			if first {
				first = false
				w.loadDiskCopy("consul unreachable at start")
			}
			delay := jittered(w.cfg.MinBackoff, w.cfg.MaxBackoff, failures)
			w.log.Warn("topology read from consul failed; serving last good copy",
				slog.Any("err", err), slog.Int("failures", failures), slog.Duration("retry_in", delay), w.servingAttrs())
			if sleep(ctx, delay) != nil {
				break
			}
			continue
		}
		if failures > 0 {
			w.log.Info("consul answers again", "after_failures", failures)
			failures = 0
		}
		prev := index
		index = nextWaitIndex(prev, meta.LastIndex)
		if index < prev {
			w.log.Warn("consul index went backwards; restarting the watch", "was", prev, "now", meta.LastIndex)
		}
		changed := w.apply(pair)
		if first {
			first = false
			if w.cur.Load() == nil {
				w.loadDiskCopy("consul holds no valid topology at start")
			}
		}
		if !changed {
			if sleep(ctx, w.cfg.MinInterval-time.Since(start)) != nil {
				break
			}
		}
	}
	return nil
}

// nextWaitIndex applies Consul's rules for the index of the next blocking query: reset to 0 when the
// index goes backwards (a snapshot restore, a server with older data), and never wait on an index
// below 1, since 0 does not block and an agent that answers 0 would make the loop spin.
func nextWaitIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got < 1:
		return 1
	}
	return got
}

func (w *Watcher) read(ctx context.Context, index uint64) (*api.KVPair, *api.QueryMeta, error) {
	timeout := readTimeout
	if index > 0 {
		// Consul adds up to wait/16 of jitter to a blocking query.
		timeout += w.cfg.WaitTime + w.cfg.WaitTime/16
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := &api.QueryOptions{WaitIndex: index, WaitTime: w.cfg.WaitTime, AllowStale: w.cfg.AllowStale}
	return w.kv.Get(w.cfg.Key, q.WithContext(ctx))
}

// apply examines what Consul returned and reports whether a new version went into service.
func (w *Watcher) apply(pair *api.KVPair) bool {
	if pair == nil {
		if !w.absent {
			w.absent = true
			w.log.Error("topology key is absent from consul; keeping the copy in service", w.servingAttrs())
		}
		w.lastSeen = 0
		return false
	}
	if w.absent {
		w.absent = false
		w.log.Info("topology key is present again", "modify_index", pair.ModifyIndex)
	}
	if pair.ModifyIndex == w.lastSeen {
		return false // a wake-up without a write (timeout, or an unrelated index bump)
	}
	w.lastSeen = pair.ModifyIndex
	return w.offer(pair.Value, pair.ModifyIndex, SourceConsul)
}

// offer puts raw into service if it decodes, validates and is newer than the copy in service.
func (w *Watcher) offer(raw []byte, modifyIndex uint64, source string) bool {
	t, err := topology.Decode(raw)
	if err != nil {
		w.log.Error("skipping invalid topology document; the last good copy keeps serving",
			slog.Uint64("modify_index", modifyIndex), slog.String("source", source), slog.Any("err", err), w.servingAttrs())
		return false
	}
	cur := w.cur.Load()
	if cur != nil {
		switch {
		case t.Version < cur.topo.Version:
			w.log.Warn("ignoring an older topology version", slog.Uint64("version", t.Version), slog.Uint64("modify_index", modifyIndex),
				slog.String("source", source), w.servingAttrs())
			return false
		case t.Version == cur.topo.Version && cur.source == SourceConsul:
			if !bytes.Equal(raw, cur.raw) {
				w.log.Warn("ignoring a different document with the version in service; writers must bump the version",
					"version", t.Version, "modify_index", modifyIndex)
			}
			return false
		case t.Version == cur.topo.Version:
			// Consul holds the version of the disk copy: serve Consul's (it is authoritative), but it
			// is not a new version, so subscribers are not told again.
			w.cur.Store(&snapshot{topo: t, source: source, raw: raw})
			w.log.Info("consul holds the version of the disk copy; serving consul's copy", "version", t.Version, "modify_index", modifyIndex)
			if !bytes.Equal(raw, cur.raw) {
				w.writeDiskCopy(raw, t.Version)
			}
			return false
		}
	}
	w.publish(&snapshot{topo: t, source: source, raw: raw})
	w.readyOnce.Do(func() { close(w.ready) })
	w.log.Info("topology in service", "version", t.Version, "modify_index", modifyIndex, "source", source)
	if source == SourceConsul {
		w.writeDiskCopy(raw, t.Version)
	}
	return true
}

// loadDiskCopy serves the disk copy when Consul has nothing to give at start.
func (w *Watcher) loadDiskCopy(why string) {
	if w.cfg.CachePath == "" {
		w.log.Warn("no topology to serve yet and no disk copy configured", "reason", why)
		return
	}
	t, err := ReadDiskCopy(w.cfg.CachePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		w.log.Warn("no topology to serve yet: the disk copy does not exist", "reason", why, "path", w.cfg.CachePath)
		return
	case err != nil:
		w.log.Error("no topology to serve yet: the disk copy is rejected", "reason", why, "path", w.cfg.CachePath, "err", err)
		return
	}
	raw, err := t.Encode()
	if err != nil {
		w.log.Error("disk copy re-encode failed", "path", w.cfg.CachePath, "err", err)
		return
	}
	w.log.Warn("serving the disk copy until consul answers", "reason", why, "path", w.cfg.CachePath, "version", t.Version)
	w.offer(raw, 0, SourceDisk)
}

func (w *Watcher) writeDiskCopy(raw []byte, version uint64) {
	if w.cfg.CachePath == "" {
		return
	}
	// The raw Consul bytes already decoded and validated; writing them (not a re-encoding) keeps the
	// disk copy byte-identical to what Consul holds.
	if err := writeFileAtomic(w.cfg.CachePath, raw); err != nil {
		// Serving continues; the node only loses its fallback for a later start without Consul.
		w.log.Error("writing the topology disk copy failed", "path", w.cfg.CachePath, "version", version, "err", err)
	}
}

func (w *Watcher) servingAttrs() slog.Attr {
	s := w.cur.Load()
	if s == nil {
		return slog.Group("serving", "version", nil)
	}
	return slog.Group("serving", "version", s.topo.Version, "source", s.source)
}

// subscriber is one Subscribe call: a buffered channel the Run loop never blocks on.
type subscriber struct {
	ch chan *topology.Topology
}

// Subscribe returns a channel that receives every new version put in service, starting with the copy
// in service now (if any), and a function that ends the subscription and closes the channel. The
// channel holds up to buf versions (at least 1); a subscriber that falls behind loses the oldest
// pending versions, never the newest, so what it receives is always in ascending version order and
// ends with the latest. The channel is closed when Run returns. Values are shared: treat them as
// read-only.
func (w *Watcher) Subscribe(buf int) (<-chan *topology.Topology, func()) {
	s := &subscriber{ch: make(chan *topology.Topology, max(buf, 1))}
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur := w.cur.Load(); cur != nil {
		s.ch <- cur.topo
	}
	if w.closed {
		close(s.ch)
		return s.ch, func() {}
	}
	w.subs[s] = struct{}{}
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if _, ok := w.subs[s]; ok {
				delete(w.subs, s)
				close(s.ch)
			}
		})
	}
}

// publish puts snap in service and hands its topology to every subscriber. Both happen under mu, so
// a concurrent Subscribe sees either the old copy and then this publication, or this copy and not
// the publication: never a version twice, never a gap.
func (w *Watcher) publish(snap *snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur.Store(snap)
	for s := range w.subs {
		sendLatest(s.ch, snap.topo)
	}
}

// sendLatest sends t on ch without blocking: when ch is full its oldest pending value is dropped to
// make room. Only the Run goroutine sends, so the loop ends after at most one drop.
func sendLatest(ch chan *topology.Topology, t *topology.Topology) {
	for {
		select {
		case ch <- t:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

func (w *Watcher) closeSubs() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for s := range w.subs {
		delete(w.subs, s)
		close(s.ch)
	}
}
