package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/fleet"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Metric is the counter the nodes export (see the api package's keyRangeRequests).
const Metric = "meridian_api_keyrange_requests_total"

// Counts are requests routed.
type Counts struct {
	Reads, Writes uint64
}

// Total is reads plus writes.
func (c Counts) Total() uint64 { return c.Reads + c.Writes }

func (c *Counts) add(o Counts) { c.Reads, c.Writes = c.Reads+o.Reads, c.Writes+o.Writes }

// KeyRange is the load on one keyrange of the topology, summed over its region's passing nodes and over
// the shards it was counted on (a keyrange that moved was counted on both).
type KeyRange struct {
	Range shardkey.KeyRange
	// Shard and Region own the keyrange in the topology Collect was given.
	Shard, Region string
	Counts
}

// Node is one scraped node: its counts per keyrange (by the keyrange's text, every series it exports,
// keyranges no longer in the topology included) and their sum, or the error that kept it from being read.
type Node struct {
	Region string
	fleet.Node
	Counts
	KeyRanges map[string]Counts
	Err       error
}

// Load is one measure of a topology's keyranges.
type Load struct {
	// KeyRanges holds every keyrange of the topology, in keyspace order; zero where no node counted.
	KeyRanges []KeyRange
	// Nodes are the passing nodes of every region, scraped or failed, by region then ID.
	Nodes []Node
	// At is when the measure was taken.
	At time.Time
}

// Failed returns the nodes that could not be scraped.
func (l Load) Failed() []Node {
	var out []Node
	for _, n := range l.Nodes {
		if n.Err != nil {
			out = append(out, n)
		}
	}
	return out
}

// ErrScrape is wrapped by a Node's Err.
var ErrScrape = errors.New("load: scraping a node's metrics")

// Options tune Collect; the zero value is the default.
type Options struct {
	// Client fetches /metrics (default: a new http.Client).
	Client *http.Client
	// Timeout bounds each node's scrape (default 5s).
	Timeout time.Duration
	// Concurrency bounds the scrapes in flight (default 16).
	Concurrency int
}

// Collect finds the passing API nodes of every region of topo in Consul, scrapes their /metrics and sums
// the requests per keyrange and per node. It fails only when Consul cannot list a region's nodes; a node
// that cannot be scraped is reported in its Node.Err.
func Collect(ctx context.Context, c *consul.Client, topo *topology.Topology) (Load, error) {
	return CollectWith(ctx, c, topo, Options{})
}

// CollectWith is Collect with options.
func CollectWith(ctx context.Context, c *consul.Client, topo *topology.Topology, opts Options) (Load, error) {
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	tab, err := topology.Compile(topo)
	if err != nil {
		return Load{}, fmt.Errorf("load: %w", err)
	}
	var nodes []Node
	for _, r := range topo.Regions {
		found, err := fleet.NodesIn(ctx, c, r.ConsulDC, r.APIService)
		if err != nil {
			return Load{}, fmt.Errorf("load: region %s: %w", r.Name, err)
		}
		for _, n := range found {
			if n.Passing {
				nodes = append(nodes, Node{Region: r.Name, Node: n})
			}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, opts.Concurrency)
	for i := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func(n *Node) {
			defer wg.Done()
			defer func() { <-sem }()
			n.KeyRanges, n.Err = scrape(ctx, opts, n.OpsAddress)
			if n.Err != nil {
				n.Err = fmt.Errorf("%w %s (%s): %w", ErrScrape, n.ID, n.OpsAddress, n.Err)
			}
		}(&nodes[i])
	}
	wg.Wait()
	krs := make([]KeyRange, 0, len(tab.Routes()))
	for _, r := range tab.Routes() {
		krs = append(krs, KeyRange{Range: r.Range, Shard: r.Shard.Name, Region: r.Shard.Region})
	}
	return sum(krs, nodes, time.Now()), nil
}

// sum adds up the nodes' counts per keyrange of krs (whose counts it ignores) and per node.
func sum(krs []KeyRange, nodes []Node, at time.Time) Load {
	l := Load{Nodes: nodes, At: at, KeyRanges: make([]KeyRange, len(krs))}
	index := make(map[string]int, len(krs))
	for i, kr := range krs {
		l.KeyRanges[i] = KeyRange{Range: kr.Range, Shard: kr.Shard, Region: kr.Region}
		index[kr.Range.String()] = i
	}
	for i := range l.Nodes {
		n := &l.Nodes[i]
		n.Counts = Counts{}
		for kr, c := range n.KeyRanges {
			n.add(c)
			if j, ok := index[kr]; ok {
				l.KeyRanges[j].add(c)
			}
		}
	}
	return l
}

// Since returns the load between earlier and l: node by node (matched by region and ID) and keyrange by
// keyrange, l's counts less earlier's. A count that went down is a restarted node, which counted from
// zero: its later value is the load since. Nodes of l that earlier lacks count all they have (they
// started in between); a node that failed in either measure counts nothing and keeps the error.
// Keyranges are those of l, and so is At.
func (l Load) Since(earlier Load) Load {
	prev := make(map[string]Node, len(earlier.Nodes))
	for _, n := range earlier.Nodes {
		prev[n.Region+"\x00"+n.ID] = n
	}
	nodes := make([]Node, len(l.Nodes))
	for i, n := range l.Nodes {
		p := prev[n.Region+"\x00"+n.ID]
		d := n
		d.KeyRanges = make(map[string]Counts, len(n.KeyRanges))
		if d.Err == nil && p.Err != nil {
			// Nothing to subtract from: counting all it has would overstate the interval.
			d.Err = p.Err
		}
		if d.Err != nil {
			nodes[i] = d
			continue
		}
		for kr, c := range n.KeyRanges {
			b := p.KeyRanges[kr]
			d.KeyRanges[kr] = Counts{Reads: delta(c.Reads, b.Reads), Writes: delta(c.Writes, b.Writes)}
		}
		nodes[i] = d
	}
	return sum(l.KeyRanges, nodes, l.At)
}

func delta(later, earlier uint64) uint64 {
	if later < earlier {
		return later // the counter was reset: it counted from zero
	}
	return later - earlier
}

// scrape reads one node's keyrange counters, by keyrange text.
func scrape(ctx context.Context, opts Options, addr string) (map[string]Counts, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	out := map[string]Counts{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decoding /metrics: %w", err)
		}
		if mf.GetName() != Metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			var kr, kind string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "keyrange":
					kr = lp.GetValue()
				case "kind":
					kind = lp.GetValue()
				}
			}
			v := uint64(m.GetCounter().GetValue())
			c := out[kr]
			switch kind {
			case "read":
				c.Reads += v
			case "write":
				c.Writes += v
			}
			out[kr] = c
		}
	}
}
