package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// VersionMeta is the key of an API node's Consul service metadata that holds the topology version its
// shard pools route with (api.TopologyVersionMeta writes it; this package must not import api).
const VersionMeta = "topology_version"

// OpsAddrMeta is the key of the service metadata that holds the host:port of a node's operations
// listener (plain HTTP /metrics and /readyz), when it has one apart from its API address, which
// serves mutual TLS (api.OpsAddrMeta writes it).
const OpsAddrMeta = "ops_addr"

// Node is one instance of a region's API service.
type Node struct {
	// ID is "<consul node>/<service ID>", as internal/discovery names nodes.
	ID string
	// Address is host:port: the service's address, or its Consul node's when the service names none.
	Address string
	// Passing is Consul's aggregated status of the instance's checks (service and node): passing
	// instances are the ones routers send to.
	Passing bool
	// Version is the topology version the node holds; 0 when it publishes none (unknown).
	Version uint64
	// OpsAddress is host:port of the node's /metrics and /readyz: its OpsAddrMeta, else Address.
	OpsAddress string
}

// ErrNotApplied is wrapped by the *NotAppliedError of WaitApplied.
var ErrNotApplied = errors.New("fleet: not every passing API node holds the topology version")

// NotAppliedError is WaitApplied's answer when ctx ended first: the passing nodes that still lagged, as
// Consul last answered, and why the wait ended. It wraps ErrNotApplied and Err (ctx's error).
type NotAppliedError struct {
	Service string
	Version uint64
	// Lagging are the passing nodes below Version (nil when Consul never answered).
	Lagging []Node
	// Err is ctx's error; Consul is the last error from Consul, if its last answer was one.
	Err, Consul error
}

func (e *NotAppliedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleet: service %s: not every passing node holds topology version %d", e.Service, e.Version)
	if len(e.Lagging) > 0 {
		b.WriteString(" (")
		for i, n := range e.Lagging {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s at %d", n.ID, n.Version)
		}
		b.WriteString(")")
	}
	if e.Consul != nil {
		fmt.Fprintf(&b, "; consul: %v", e.Consul)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *NotAppliedError) Unwrap() []error { return []error{ErrNotApplied, e.Err} }

// Nodes lists the instances of service in the client's datacenter, passing or not, ordered by ID.
func Nodes(ctx context.Context, c *consul.Client, service string) ([]Node, error) {
	return NodesIn(ctx, c, "", service)
}

// NodesIn is Nodes in the Consul datacenter dc (the region's consul_dc); "" is the client's own.
func NodesIn(ctx context.Context, c *consul.Client, dc, service string) ([]Node, error) {
	nodes, _, err := query(ctx, c, dc, service, 0)
	return nodes, err
}

// WaitApplied returns nil once every passing instance of service (in the client's datacenter) holds
// topology version or a later one, and at once when none is passing (see the package doc for why that
// is safe). Nodes that are not passing are ignored. When ctx ends first it returns a *NotAppliedError
// naming the nodes that lag.
func WaitApplied(ctx context.Context, c *consul.Client, service string, version uint64) error {
	return WaitAppliedIn(ctx, c, "", service, version)
}

// waitTime is how long one blocking query waits at Consul; ctx bounds the whole wait.
const waitTime = time.Minute

// WaitAppliedIn is WaitApplied in the Consul datacenter dc; "" is the client's own.
func WaitAppliedIn(ctx context.Context, c *consul.Client, dc, service string, version uint64) error {
	var (
		index    uint64
		lagging  []Node
		lastErr  error
		failures int
	)
	for {
		nodes, next, err := query(ctx, c, dc, service, index)
		if err != nil {
			if ctx.Err() != nil {
				return &NotAppliedError{Service: service, Version: version, Lagging: lagging, Err: ctx.Err(), Consul: lastErr}
			}
			failures++
			lastErr, index = err, 0
			if !sleep(ctx, backoff(failures)) {
				return &NotAppliedError{Service: service, Version: version, Lagging: lagging, Err: ctx.Err(), Consul: lastErr}
			}
			continue
		}
		failures, lastErr = 0, nil
		lagging = lagging[:0:0]
		for _, n := range nodes {
			if n.Passing && n.Version < version {
				lagging = append(lagging, n)
			}
		}
		if len(lagging) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return &NotAppliedError{Service: service, Version: version, Lagging: lagging, Err: ctx.Err()}
		}
		index = next
	}
}

// query reads the service's instances; with index > 0 it is a blocking query that answers when the
// service's health changed after index. It returns the index to wait on next.
func query(ctx context.Context, c *consul.Client, dc, service string, index uint64) ([]Node, uint64, error) {
	q := (&consul.QueryOptions{Datacenter: dc, WaitIndex: index, WaitTime: waitTime}).WithContext(ctx)
	entries, meta, err := c.Health().Service(service, "", false, q)
	if err != nil {
		return nil, 0, fmt.Errorf("fleet: reading the instances of %s: %w", service, err)
	}
	next := meta.LastIndex
	switch {
	case next < index:
		next = 0 // the index went backwards (a restore, another server): start over
	case next < 1:
		next = 1
	}
	nodes := make([]Node, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil || e.Node == nil {
			continue
		}
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address
		}
		v, err := strconv.ParseUint(e.Service.Meta[VersionMeta], 10, 64)
		if err != nil {
			v = 0 // none published, or not a version: unknown
		}
		addr := net.JoinHostPort(host, strconv.Itoa(e.Service.Port))
		ops := e.Service.Meta[OpsAddrMeta]
		if _, _, err := net.SplitHostPort(ops); err != nil {
			ops = addr
		}
		nodes = append(nodes, Node{
			ID:         e.Node.Node + "/" + e.Service.ID,
			Address:    addr,
			Passing:    e.Checks.AggregatedStatus() == consul.HealthPassing,
			Version:    v,
			OpsAddress: ops,
		})
	}
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return nodes, next, nil
}

// backoff is an exponential, fully jittered delay for the given attempt: 50ms doubling up to 2s, short
// because a cutover waits on it.
func backoff(attempt int) time.Duration {
	d := min(50*time.Millisecond<<min(attempt-1, 6), 2*time.Second)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
