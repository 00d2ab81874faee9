package upstream

import (
	"context"
	"errors"
	"fmt"
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

// Pool is one region's API nodes.
type Pool struct {
	Region  string
	Service string
	DC      string

	nodes atomic.Pointer[[]*Node]
	// known is set once Consul has answered for the pool: an empty list then means "no passing node",
	// not "not asked yet".
	known atomic.Bool
	// retryAfter is the Retry-After of a region with no node at all.
	retryAfter time.Duration
}

// Nodes returns the nodes in service (passing in Consul). Callers must not modify the slice.
func (p *Pool) Nodes() []*Node {
	if s := p.nodes.Load(); s != nil {
		return *s
	}
	return nil
}

// Known reports whether Consul has answered for the pool since start.
func (p *Pool) Known() bool { return p.known.Load() }

// DownError is ErrRegionDown with the time after which a node may be tried again.
type DownError struct {
	Region     string
	RetryAfter time.Duration
}

func (e *DownError) Error() string { return "upstream: region " + e.Region + ": no available API node" }
func (e *DownError) Unwrap() error { return ErrRegionDown }

// Pick returns a node to try, never one in skip (the nodes a retry has already tried). When none may be
// tried it returns an error wrapping ErrRegionDown (a *DownError) or ErrUnknown. It does not allocate
// and takes no lock but the candidates' breakers'.
func (p *Pool) Pick(skip []*Node) (*Node, error) {
	if !p.known.Load() {
		return nil, ErrUnknown
	}
	now := time.Now()
	nodes := p.Nodes()
	if n := pick(nodes, skip, now.UnixNano()); n != nil {
		return n, nil
	}
	return nil, &DownError{Region: p.Region, RetryAfter: p.retryIn(nodes, now)}
}

// retryIn is how long until one of nodes leaves its ejection, or the default when none is ejected
// (they are open, or there are none).
func (p *Pool) retryIn(nodes []*Node, now time.Time) time.Duration {
	best := time.Duration(-1)
	for _, n := range nodes {
		if d := time.Duration(n.ejectedUntil.Load() - now.UnixNano()); d > 0 && (best < 0 || d < best) {
			best = d
		}
	}
	if best < 0 {
		return p.retryAfter
	}
	return max(best, time.Second)
}

// update replaces the nodes with Consul's passing entries, keeping the Node (and its counters) of
// every instance that stays.
func (p *Pool) update(entries []*consul.ServiceEntry, h *Health, log *slog.Logger) (added, removed int) {
	old := map[string]*Node{}
	for _, n := range p.Nodes() {
		old[n.ID+"@"+n.Addr] = n
	}
	next := make([]*Node, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil || e.Node == nil {
			continue
		}
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address
		}
		id, addr := e.Node.Node+"/"+e.Service.ID, net.JoinHostPort(host, strconv.Itoa(e.Service.Port))
		if prev, ok := old[id+"@"+addr]; ok {
			next = append(next, prev)
			delete(old, id+"@"+addr)
			continue
		}
		added++
		next = append(next, newNode(id, addr, p.Region, h, log))
	}
	p.nodes.Store(&next)
	p.known.Store(true)
	return added, len(old)
}

// SetConfig configures a Set.
type SetConfig struct {
	Consul *consul.Client
	Health Health
	// WaitTime is how long one blocking query waits; MinBackoff and MaxBackoff bound the retries after a
	// failed query; MinInterval spaces queries that brought nothing new.
	WaitTime, MinBackoff, MaxBackoff, MinInterval time.Duration
	// RetryAfter is the Retry-After of a region that has no node at all.
	RetryAfter time.Duration
}

// DefaultSetConfig returns the defaults (Consul has none).
func DefaultSetConfig() SetConfig {
	return SetConfig{Health: DefaultHealth(), WaitTime: 5 * time.Minute, MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 10 * time.Second, MinInterval: 20 * time.Millisecond, RetryAfter: 5 * time.Second}
}

// Validate names the first bad field.
func (c SetConfig) Validate() error {
	switch {
	case c.Consul == nil:
		return errors.New("upstream: Consul client is required")
	case c.WaitTime <= 0 || c.WaitTime > 10*time.Minute:
		return errors.New("upstream: WaitTime must be in (0, 10m]")
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return errors.New("upstream: MinBackoff must be positive and MaxBackoff at least MinBackoff")
	case c.MinInterval < 0:
		return errors.New("upstream: MinInterval must not be negative")
	case c.RetryAfter < time.Second:
		return errors.New("upstream: RetryAfter must be at least 1s")
	}
	return c.Health.Validate()
}

// Set holds a pool per region of the topology and keeps each one following Consul.
type Set struct {
	cfg SetConfig
	log *slog.Logger

	pools atomic.Pointer[map[string]*Pool]

	mu       sync.Mutex // guards watches
	watches  map[string]*watch
	wg       sync.WaitGroup
	runCalls atomic.Bool
}

type watch struct {
	pool   *Pool
	cancel context.CancelFunc
}

// NewSet returns a Set; Run follows the topology and Consul.
func NewSet(cfg SetConfig, log *slog.Logger) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Set{cfg: cfg, log: log, watches: map[string]*watch{}}
	empty := map[string]*Pool{}
	s.pools.Store(&empty)
	return s, nil
}

// NewStaticSet returns a Set of fixed nodes (host:port by region) that follows nothing: for tests,
// benchmarks and development without Consul. Its Run must not be called.
func NewStaticSet(nodes map[string][]string, h Health, log *slog.Logger) (*Set, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Set{cfg: SetConfig{Health: h, RetryAfter: 5 * time.Second}, log: log, watches: map[string]*watch{}}
	s.runCalls.Store(true)
	pools := map[string]*Pool{}
	for region, addrs := range nodes {
		p := &Pool{Region: region, retryAfter: s.cfg.RetryAfter}
		list := make([]*Node, 0, len(addrs))
		for i, a := range addrs {
			list = append(list, newNode(fmt.Sprintf("static-%s-%d", region, i), a, region, &s.cfg.Health, log))
		}
		p.nodes.Store(&list)
		p.known.Store(true)
		pools[region] = p
	}
	s.pools.Store(&pools)
	return s, nil
}

// Pool returns the region's pool, or nil for a region the topology does not name.
func (s *Set) Pool(region string) *Pool { return (*s.pools.Load())[region] }

// Pools returns every pool by region. Callers must not modify the map.
func (s *Set) Pools() map[string]*Pool { return *s.pools.Load() }

// Run applies each topology received on topos (regions added, changed or gone) until ctx is done or
// topos is closed, then stops every Consul watch and returns.
func (s *Set) Run(ctx context.Context, topos <-chan *topology.Topology) error {
	if !s.runCalls.CompareAndSwap(false, true) {
		return errors.New("upstream: Set.Run called twice")
	}
	defer s.stopAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case t, ok := <-topos:
			if !ok {
				return nil
			}
			s.apply(ctx, t)
		}
	}
}

// apply starts a watch for each new (or changed) region and stops those of regions that are gone.
func (s *Set) apply(ctx context.Context, t *topology.Topology) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]*Pool, len(t.Regions))
	for _, r := range t.Regions {
		if w, ok := s.watches[r.Name]; ok && w.pool.Service == r.APIService && w.pool.DC == r.ConsulDC {
			next[r.Name] = w.pool
			continue
		}
		if w, ok := s.watches[r.Name]; ok {
			w.cancel()
		}
		p := &Pool{Region: r.Name, Service: r.APIService, DC: r.ConsulDC, retryAfter: s.cfg.RetryAfter}
		empty := []*Node{}
		p.nodes.Store(&empty)
		wctx, cancel := context.WithCancel(ctx)
		s.watches[r.Name] = &watch{pool: p, cancel: cancel}
		next[r.Name] = p
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.follow(wctx, p)
		}()
		s.log.Info("following the region's API nodes", "region", r.Name, "service", r.APIService, "dc", r.ConsulDC)
	}
	for name, w := range s.watches {
		if _, ok := next[name]; !ok {
			w.cancel()
			delete(s.watches, name)
			s.log.Info("region left the topology; no longer following its nodes", "region", name)
		}
	}
	s.pools.Store(&next)
}

func (s *Set) stopAll() {
	s.mu.Lock()
	for _, w := range s.watches {
		w.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// follow keeps p's nodes equal to Consul's passing instances of its service, with blocking queries.
// When Consul cannot be reached the nodes last seen stay in service: passive ejection still removes the
// dead ones.
func (s *Set) follow(ctx context.Context, p *Pool) {
	log := s.log.With("region", p.Region, "service", p.Service)
	var index uint64
	failures := 0
	health := s.cfg.Consul.Health()
	for ctx.Err() == nil {
		start := time.Now()
		qctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTime+s.cfg.WaitTime/16+10*time.Second)
		q := (&consul.QueryOptions{WaitIndex: index, WaitTime: s.cfg.WaitTime, Datacenter: p.DC, AllowStale: true}).WithContext(qctx)
		entries, meta, err := health.Service(p.Service, "", true, q)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			index = 0
			delay := backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, failures)
			if failures == 1 || failures%10 == 0 {
				log.Warn("reading the region's API nodes from consul failed; keeping the last list", "err", err,
					"failures", failures, "nodes", len(p.Nodes()), "retry_in", delay)
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
		added, removed := p.update(entries, &s.cfg.Health, s.log)
		if added > 0 || removed > 0 {
			log.Info("region's API nodes changed", "passing", len(entries), "added", added, "removed", removed)
		}
		if !changed {
			if !sleep(ctx, s.cfg.MinInterval-time.Since(start)) {
				return
			}
		}
	}
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
