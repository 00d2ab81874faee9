package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/8thdegree/meridian/internal/discovery"
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

// update replaces the nodes with the region's passing instances, keeping the Node (and its counters)
// of every instance that stays.
func (p *Pool) update(instances []discovery.Node, h *Health, log *slog.Logger) (added, removed int) {
	old := map[discovery.Node]*Node{}
	for _, n := range p.Nodes() {
		old[discovery.Node{ID: n.ID, Addr: n.Addr}] = n
	}
	next := make([]*Node, 0, len(instances))
	for _, in := range instances {
		if prev, ok := old[in]; ok {
			next = append(next, prev)
			delete(old, in)
			continue
		}
		added++
		next = append(next, newNode(in.ID, in.Addr, p.Region, h, log))
	}
	p.nodes.Store(&next)
	p.known.Store(true)
	return added, len(old)
}

// Config configures Regions.
type Config struct {
	// Discovery follows the regions' nodes in Consul; its OnUpdate is Regions' own.
	Discovery discovery.Config
	Health    Health
	// RetryAfter is the Retry-After of a region that has no node at all.
	RetryAfter time.Duration
}

// DefaultConfig returns the defaults (Discovery.Consul has none).
func DefaultConfig() Config {
	return Config{Discovery: discovery.DefaultConfig(), Health: DefaultHealth(), RetryAfter: 5 * time.Second}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if err := c.Discovery.Validate(); err != nil {
		return err
	}
	if c.RetryAfter < time.Second {
		return errors.New("upstream: RetryAfter must be at least 1s")
	}
	return c.Health.Validate()
}

// Regions holds the node pool of every region of the topology, each following the region's healthy
// nodes as internal/discovery sees them.
type Regions struct {
	cfg Config
	log *slog.Logger
	// nodes is nil for static Regions.
	nodes *discovery.Watcher

	pools atomic.Pointer[map[string]*Pool]

	mu       sync.Mutex // serialises apply
	runCalls atomic.Bool
}

// New returns Regions; Run follows the topology and Consul.
func New(cfg Config, log *slog.Logger) (*Regions, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Regions{cfg: cfg, log: log}
	dc := cfg.Discovery
	dc.OnUpdate = r.update
	var err error
	if r.nodes, err = discovery.New(dc, log); err != nil {
		return nil, err
	}
	empty := map[string]*Pool{}
	r.pools.Store(&empty)
	return r, nil
}

// NewStatic returns Regions of fixed nodes (host:port by region) that follow nothing: for tests,
// benchmarks and development without Consul. Its Run must not be called.
func NewStatic(nodes map[string][]string, h Health, log *slog.Logger) (*Regions, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Regions{cfg: Config{Health: h, RetryAfter: 5 * time.Second}, log: log}
	r.runCalls.Store(true)
	pools := map[string]*Pool{}
	for region, addrs := range nodes {
		p := &Pool{Region: region, retryAfter: r.cfg.RetryAfter}
		list := make([]*Node, 0, len(addrs))
		for i, a := range addrs {
			list = append(list, newNode(fmt.Sprintf("static-%s-%d", region, i), a, region, &r.cfg.Health, log))
		}
		p.nodes.Store(&list)
		p.known.Store(true)
		pools[region] = p
	}
	r.pools.Store(&pools)
	return r, nil
}

// Pool returns the region's pool, or nil for a region the topology does not name.
func (r *Regions) Pool(region string) *Pool { return (*r.pools.Load())[region] }

// Pools returns every pool by region. Callers must not modify the map.
func (r *Regions) Pools() map[string]*Pool { return *r.pools.Load() }

// Run applies each topology received on topos (regions added, changed or gone) until ctx is done or
// topos is closed, then stops following Consul and returns. Each topology's pools are in place before
// discovery follows its regions, so every answer finds its pool.
func (r *Regions) Run(ctx context.Context, topos <-chan *topology.Topology) error {
	if !r.runCalls.CompareAndSwap(false, true) {
		return errors.New("upstream: Regions.Run called twice")
	}
	fwd := make(chan *topology.Topology, 1)
	done := make(chan error, 1)
	go func() { done <- r.nodes.Run(ctx, fwd) }()
	defer func() {
		close(fwd)
		_ = <-done // Run returns nil once fwd is closed
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case t, ok := <-topos:
			if !ok {
				return nil
			}
			r.apply(t)
			select {
			case fwd <- t:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// apply makes a pool for each new (or changed) region and drops those of regions that are gone.
func (r *Regions) apply(t *topology.Topology) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.pools.Load()
	next := make(map[string]*Pool, len(t.Regions))
	for _, reg := range t.Regions {
		if p, ok := cur[reg.Name]; ok && p.Service == reg.APIService && p.DC == reg.ConsulDC {
			next[reg.Name] = p
			continue
		}
		p := &Pool{Region: reg.Name, Service: reg.APIService, DC: reg.ConsulDC, retryAfter: r.cfg.RetryAfter}
		empty := []*Node{}
		p.nodes.Store(&empty)
		next[reg.Name] = p
	}
	r.pools.Store(&next)
}

// update is discovery's OnUpdate: it brings the region's pool in line with its passing nodes. An
// answer for a region whose service or datacenter has just changed finds no matching pool: the pool of
// the new service waits for its own watch.
func (r *Regions) update(s discovery.Snapshot) {
	p := r.Pool(s.Name)
	if p == nil || p.Service != s.Service || p.DC != s.DC {
		return
	}
	added, removed := p.update(s.Nodes, &r.cfg.Health, r.log)
	if added > 0 || removed > 0 {
		r.log.Info("region's API nodes changed", "region", s.Name, "service", s.Service, "passing", len(s.Nodes), "added", added, "removed", removed)
	}
}
