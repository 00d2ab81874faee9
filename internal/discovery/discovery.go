// Package discovery follows the healthy API nodes of every region of the topology in Consul: the
// passing instances of each region's API service (the topology names it, and the Consul datacenter),
// watched with blocking queries, so a node whose check fails is gone within Consul's check interval and a
// new one appears without a restart. Use it wherever a component needs "the healthy nodes of region R":
// the edge router balances over them (router/internal/upstream), an API node calls its peers of other
// regions with them (api/internal/peers).
//
// Consul is never called on the hot path: each region's nodes are an immutable snapshot swapped
// atomically when Consul answers. When Consul cannot be reached, the last snapshot stays in service and
// the watch retries with jittered exponential back-off.
package discovery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Node is one passing instance of a region's API service.
type Node struct {
	// ID is "<consul node>/<service ID>": unique, and stable while the instance lives.
	ID string
	// Addr is host:port: the service's address, or its Consul node's when the service names none.
	Addr string
}

// Region is what is followed for one region of the topology.
type Region struct {
	Name    string
	Service string
	DC      string
}

// Snapshot is what is known of one region's nodes.
type Snapshot struct {
	Region
	// Nodes are the passing instances, as Consul last answered. Shared: callers must not modify it.
	Nodes []Node
	// Known is set once Consul has answered for the region: no Nodes then means "no passing node",
	// not "not asked yet".
	Known bool
}

// Config configures a Watcher.
type Config struct {
	Consul *consul.Client
	// WaitTime is how long one blocking query waits; MinBackoff and MaxBackoff bound the retries after a
	// failed query; MinInterval spaces queries that brought nothing new.
	WaitTime, MinBackoff, MaxBackoff, MinInterval time.Duration
	// OnUpdate, when set, is called with the new snapshot after every answer from Consul for a region,
	// changed or not. It runs on that region's watch goroutine, so the calls for one region come one
	// at a time and in order; it must not block for long.
	OnUpdate func(Snapshot)
}

// DefaultConfig returns the defaults (Consul has none).
func DefaultConfig() Config {
	return Config{WaitTime: 5 * time.Minute, MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second,
		MinInterval: 20 * time.Millisecond}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Consul == nil:
		return errors.New("discovery: Consul client is required")
	case c.WaitTime <= 0 || c.WaitTime > 10*time.Minute:
		return errors.New("discovery: WaitTime must be in (0, 10m]")
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return errors.New("discovery: MinBackoff must be positive and MaxBackoff at least MinBackoff")
	case c.MinInterval < 0:
		return errors.New("discovery: MinInterval must not be negative")
	}
	return nil
}

// Watcher follows the nodes of every region of the topology it is given. It is safe for concurrent use.
type Watcher struct {
	cfg Config
	log *slog.Logger

	watches atomic.Pointer[map[string]*watch]

	mu      sync.Mutex // serialises apply and stopAll
	wg      sync.WaitGroup
	running atomic.Bool
}

type watch struct {
	snap   atomic.Pointer[Snapshot]
	cancel context.CancelFunc
}

// New returns a Watcher; Run follows the topology and Consul.
func New(cfg Config, log *slog.Logger) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, log: log}
	empty := map[string]*watch{}
	w.watches.Store(&empty)
	return w, nil
}

// Snapshot returns what is known of region's nodes; false when the topology in service does not name
// the region (or none has been received yet).
func (w *Watcher) Snapshot(region string) (Snapshot, bool) {
	wt, ok := (*w.watches.Load())[region]
	if !ok {
		return Snapshot{}, false
	}
	return *wt.snap.Load(), true
}

// Run applies each topology received on topos (regions added, changed or gone) until ctx is done or
// topos is closed, then stops every Consul watch and returns.
func (w *Watcher) Run(ctx context.Context, topos <-chan *topology.Topology) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("discovery: Watcher.Run called twice")
	}
	defer w.stopAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case t, ok := <-topos:
			if !ok {
				return nil
			}
			w.apply(ctx, t)
		}
	}
}

// apply starts a watch for each new (or changed) region and stops those of regions that are gone.
func (w *Watcher) apply(ctx context.Context, t *topology.Topology) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := *w.watches.Load()
	next := make(map[string]*watch, len(t.Regions))
	for _, r := range t.Regions {
		region := Region{Name: r.Name, Service: r.APIService, DC: r.ConsulDC}
		if wt, ok := cur[r.Name]; ok && wt.snap.Load().Region == region {
			next[r.Name] = wt
			continue
		}
		if wt, ok := cur[r.Name]; ok {
			wt.cancel()
		}
		wctx, cancel := context.WithCancel(ctx)
		wt := &watch{cancel: cancel}
		wt.snap.Store(&Snapshot{Region: region})
		next[r.Name] = wt
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.follow(wctx, wt, region)
		}()
		w.log.Info("following the region's API nodes", "region", r.Name, "service", r.APIService, "dc", r.ConsulDC)
	}
	for name, wt := range cur {
		if _, ok := next[name]; !ok {
			wt.cancel()
			w.log.Info("region left the topology; no longer following its nodes", "region", name)
		}
	}
	w.watches.Store(&next)
}

func (w *Watcher) stopAll() {
	w.mu.Lock()
	for _, wt := range *w.watches.Load() {
		wt.cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// follow keeps wt's snapshot equal to Consul's passing instances of the region's service, with blocking
// queries. When Consul cannot be reached the nodes last seen stay in service.
func (w *Watcher) follow(ctx context.Context, wt *watch, region Region) {
	log := w.log.With("region", region.Name, "service", region.Service)
	var index uint64
	failures := 0
	health := w.cfg.Consul.Health()
	for ctx.Err() == nil {
		start := time.Now()
		qctx, cancel := context.WithTimeout(ctx, w.cfg.WaitTime+w.cfg.WaitTime/16+10*time.Second)
		q := (&consul.QueryOptions{WaitIndex: index, WaitTime: w.cfg.WaitTime, Datacenter: region.DC, AllowStale: true}).WithContext(qctx)
		entries, meta, err := health.Service(region.Service, "", true, q)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			index = 0
			delay := backoff(w.cfg.MinBackoff, w.cfg.MaxBackoff, failures)
			if failures == 1 || failures%10 == 0 {
				log.Warn("reading the region's API nodes from consul failed; keeping the last list", "err", err,
					"failures", failures, "nodes", len(wt.snap.Load().Nodes), "retry_in", delay)
			}
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		if failures > 0 {
			log.Info("consul answers again", "after_failures", failures)
			failures = 0
		}
		changed := meta.LastIndex != index
		switch {
		case meta.LastIndex < index:
			index = 0 // the index went backwards (a restore, another server): start over
		case meta.LastIndex < 1:
			index = 1
		default:
			index = meta.LastIndex
		}
		s := &Snapshot{Region: region, Nodes: nodes(entries), Known: true}
		if ctx.Err() != nil {
			return // the region left or changed while the query ran: its answer is not the region's now
		}
		wt.snap.Store(s)
		if w.cfg.OnUpdate != nil {
			w.cfg.OnUpdate(*s)
		}
		if !changed {
			if !sleep(ctx, w.cfg.MinInterval-time.Since(start)) {
				return
			}
		}
	}
}

// nodes turns Consul's health entries into Nodes.
func nodes(entries []*consul.ServiceEntry) []Node {
	out := make([]Node, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil || e.Node == nil {
			continue
		}
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address
		}
		out = append(out, Node{ID: e.Node.Node + "/" + e.Service.ID, Addr: net.JoinHostPort(host, strconv.Itoa(e.Service.Port))})
	}
	return out
}

// backoff is an exponential, fully jittered delay for the given attempt.
func backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo << min(attempt-1, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
