package api

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// TopologyVersionMeta is the key of the node's Consul service metadata that holds the topology version
// its shard pools route with. shardmgr/fleet reads it to wait until every node of a region holds a
// version (a move's cutover waits so for its freeze); the two must agree on the name.
const TopologyVersionMeta = "topology_version"

// OpsAddrMeta is the key of the service metadata naming the node's operations listener (host:port),
// where shardmgr/load scrapes /metrics; shardmgr/fleet.OpsAddrMeta reads it.
const OpsAddrMeta = "ops_addr"

// A node publishes its topology version by re-registering its service with new metadata. Consul's
// agent (1.16 here) keeps the status of a check it already runs across the re-registration (the
// snapshot in agent.addServiceInternal), so the node stays passing and routers keep sending to it;
// shardmgr/fleet's TestRegisterAgainKeepsCheckPassing and api's TestNodePublishesTopologyVersion pin
// that against the real agent. The alternatives were worse: a KV key per node needs a session to vanish
// with the node and a second watch to join with the health checks, and setting the check's Status on
// every update would hide a failing check for a moment.

// registration is the node's service registration, without the version: publishVersion adds it. The
// service's address is the one routers and peers dial (addr, or MERIDIAN_ADVERTISE_ADDR); the health
// check goes to checkAddr over plain HTTP, the operations listener when there is one.
func (n *Node) registration(service string, addr, checkAddr net.Addr) (*consul.AgentServiceRegistration, error) {
	adv := n.cfg.AdvertiseAddr
	if adv == "" {
		adv = addr.String()
	}
	host, portStr, err := net.SplitHostPort(adv)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portStr)
	checkHost, checkPort, err := net.SplitHostPort(checkAddr.String())
	if err != nil {
		return nil, err
	}
	if checkAddr.String() == addr.String() {
		checkHost, checkPort = host, portStr
	} else if ip := net.ParseIP(checkHost); ip != nil && ip.IsUnspecified() {
		checkHost = host
	}
	meta := map[string]string{"region": n.cfg.Region}
	if checkAddr.String() != addr.String() {
		meta[OpsAddrMeta] = net.JoinHostPort(checkHost, checkPort)
	}
	id := n.cfg.NodeID
	if id == "" {
		hn, _ := os.Hostname()
		id = fmt.Sprintf("%s-%s-%d", service, hn, port)
	}
	return &consul.AgentServiceRegistration{
		ID:      id,
		Name:    service,
		Address: host,
		Port:    port,
		Tags:    []string{"region=" + n.cfg.Region},
		Meta:    meta,
		Check: &consul.AgentServiceCheck{
			HTTP:                           "http://" + net.JoinHostPort(checkHost, checkPort) + "/readyz",
			Interval:                       "1s",
			Timeout:                        "1s",
			DeregisterCriticalServiceAfter: "1m",
		},
	}, nil
}

// registerTimeout bounds one registration: the agent is local, and a hung one must not hang shutdown.
const registerTimeout = 5 * time.Second

// joinCatalog registers the node in Consul under its region's API service and starts publishVersion,
// which registers again with every topology version the pools apply (and retries a failed first
// registration). It returns the service ID and a stop that returns once publishVersion has returned.
func (n *Node) joinCatalog(ctx context.Context, addr, checkAddr net.Addr) (string, func()) {
	region, _ := n.pools.Table().Topology().Region(n.cfg.Region)
	reg, err := n.registration(region.APIService, addr, checkAddr)
	if err != nil {
		n.log.Error("cannot register in Consul; routers will not find this node", "err", err)
		return "", func() {}
	}
	registered := true
	if err := n.register(ctx, reg); err != nil {
		registered = false
		n.log.Error("registering in Consul failed; routers will not find this node until it succeeds", "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.publishVersion(ctx, reg, registered)
	}()
	return reg.ID, func() {
		cancel()
		<-done
	}
}

// register registers reg with the topology version the pools route with now. The call is bounded by its
// own timeout, not by ctx's end: a registration cancelled half-way could still reach the agent after
// Serve's deregistration and put the node back in the catalog.
func (n *Node) register(ctx context.Context, reg *consul.AgentServiceRegistration) error {
	v := n.pools.Table().Version()
	r := *reg
	r.Meta = maps.Clone(reg.Meta)
	r.Meta[TopologyVersionMeta] = strconv.FormatUint(v, 10)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registerTimeout)
	defer cancel()
	if err := n.consul.Agent().ServiceRegisterOpts(&r, consul.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return err
	}
	n.published.Store(v)
	return nil
}

// publishVersion keeps the version in the node's registration equal to the one its pools route with,
// until ctx ends: followTopology signals every applied topology on n.applied, after the pools have
// applied it, so the version a node publishes is one whose frozen keyranges it already holds writes
// for. A failed registration (Consul away) is retried with back-off: until it succeeds a move waiting
// for this node waits, which is the safe side.
func (n *Node) publishVersion(ctx context.Context, reg *consul.AgentServiceRegistration, registered bool) {
	failures := 0
	var retry <-chan time.Time
	// deferUntil is set while a version with a keyrange of the region frozen waits to be published.
	var deferUntil time.Time
	for {
		var deferred <-chan time.Time
		if v := n.pools.Table().Version(); !registered || v != n.published.Load() {
			frozen := registered && frozenIn(n.pools.Table().Topology(), n.cfg.Region)
			now := time.Now()
			if frozen && deferUntil.IsZero() {
				deferUntil = now.Add(publishFrozenDelay)
			}
			switch {
			case frozen && now.Before(deferUntil):
				// A cutover's freeze: its runner asks this node directly (TopologyPath), and a
				// registration now would put a catalog write per node (and the blocking queries it
				// wakes) in the middle of the cutover, ahead of its drain and its flip. The flip
				// follows within tens of ms and is published at once; a freeze that lasts is
				// published after publishFrozenDelay, for waiters that cannot ask the node.
				deferred = time.After(deferUntil.Sub(now))
			default:
				deferUntil = time.Time{}
				if err := n.register(ctx, reg); err != nil {
					failures++
					delay := min(50*time.Millisecond<<min(failures-1, 8), 5*time.Second)
					if failures == 1 || failures%20 == 0 {
						msg := "publishing the topology version in Consul failed; moves wait for this node until it succeeds"
						if !registered {
							msg = "registering in Consul failed; routers will not find this node until it succeeds"
						}
						n.log.Warn(msg, "version", v, "err", err, "failures", failures, "retry_in", delay)
					}
					retry = time.After(delay)
				} else {
					if registered {
						n.log.Info("topology version published in Consul", "version", n.published.Load())
					} else {
						n.log.Info("registered in Consul", "topology_version", n.published.Load(), "after_failures", failures)
					}
					registered, failures, retry = true, 0, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.applied:
		case <-retry:
		case <-deferred:
		}
	}
}

// publishFrozenDelay is how long a version that freezes a keyrange of the node's region waits before
// it is published in Consul (publishVersion): longer than a cutover's drain and flip take, short
// beside a move's freeze budget (1 s), so that a runner waiting on registrations alone still fits.
const publishFrozenDelay = 250 * time.Millisecond

// frozenIn reports whether t has a frozen keyrange on a shard of region.
func frozenIn(t *topology.Topology, region string) bool {
	for _, a := range t.KeyRanges {
		if a.State != topology.Frozen {
			continue
		}
		if sh, ok := t.Shard(a.Shard); ok && sh.Region == region {
			return true
		}
	}
	return false
}

// TopologyPath is the node's ops endpoint that answers the topology version its pools route with:
// GET /topologyz?min=<v>&wait=<duration> answers {"version": n} as soon as n >= v, or after wait
// (at most maxTopologyWait) with the version it holds then. Without min it answers at once. A move's
// cutover asks every passing node of the region here (shardmgr/fleet), which learns of the node's
// apply one HTTP round trip after it happened, instead of waiting for the node's registration to
// reach the Consul catalog; the two must agree on the path (fleet.VersionPath).
const TopologyPath = "/topologyz"

// maxTopologyWait bounds one long poll of TopologyPath.
const maxTopologyWait = 10 * time.Second

// topologyz serves TopologyPath. The version is the pools' (read after they applied it), so a node
// that answers v holds every request to a keyrange frozen in v, as a published version does.
func (n *Node) topologyz(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var minV uint64
	wait := time.Duration(0)
	var bad string
	if s := q.Get("min"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			bad = "min must be a topology version (a non-negative integer), got " + strconv.Quote(s)
		}
		minV = v
	}
	if s := q.Get("wait"); s != "" && bad == "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxTopologyWait {
			bad = "wait must be a duration between 0 and " + maxTopologyWait.String() + ", got " + strconv.Quote(s)
		}
		wait = d
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if bad != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": bad})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	v, _ := n.pools.WaitVersion(ctx, minV) // the version held when wait ran out answers too
	_ = json.NewEncoder(w).Encode(map[string]uint64{"version": v})
}

// topologyApplied wakes publishVersion after the pools applied a topology. The channel holds one
// signal: publishVersion reads the version the pools hold when it wakes, so signals may merge.
func (n *Node) topologyApplied() {
	select {
	case n.applied <- struct{}{}:
	default:
	}
}

// keyRangeRequests exports the pools' request counts of the node's region (shardpool.KeyRangeCounts) as
// meridian_api_keyrange_requests_total. It reads them at scrape time: the request path only adds to an
// atomic counter, and no Prometheus vector is probed per request.
type keyRangeRequests struct {
	pools  *shardpool.Manager
	region string
	desc   *prometheus.Desc
}

func newKeyRangeRequests(pools *shardpool.Manager, region string) *keyRangeRequests {
	return &keyRangeRequests{pools: pools, region: region, desc: prometheus.NewDesc(
		"meridian_api_keyrange_requests_total",
		"Requests routed to a keyrange of the node's region, by shard and kind (read or write); the rebalance planner sums them over a region's nodes.",
		[]string{"keyrange", "shard", "kind"}, nil)}
}

func (c *keyRangeRequests) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *keyRangeRequests) Collect(ch chan<- prometheus.Metric) {
	for _, k := range c.pools.KeyRangeCounts() {
		if k.Region != c.region && k.Reads+k.Writes == 0 {
			continue // other regions' keyranges are never routed here: no series for them
		}
		kr := k.Range.String()
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(k.Reads), kr, k.Shard, "read")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(k.Writes), kr, k.Shard, "write")
	}
}

// topologyGauges export the version the pools route with and the one published in Consul.
func (n *Node) topologyGauges() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_api_topology_version",
			Help: "Version of the topology the node's shard pools route with (0 before the first).",
		}, func() float64 {
			if t := n.pools.Table(); t != nil {
				return float64(t.Version())
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_api_topology_version_published",
			Help: "Topology version the node last published in its Consul registration (0 when not registered).",
		}, func() float64 { return float64(n.published.Load()) }),
	}
}
