package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
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

// VersionPath is the API node's ops endpoint that answers the topology version it holds, long-polled
// with ?min=<version>&wait=<duration> (api.TopologyPath; this package must not import api).
const VersionPath = "/topologyz"

// askWait is how long one ask of a node's VersionPath waits there for the version.
const askWait = 5 * time.Second

// askClient asks the nodes. Its connections are kept: a cutover asks every node of the region, and
// a round trip on an open connection is what the wait costs once the nodes applied the version.
var askClient = &http.Client{Transport: &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost: 4,
	IdleConnTimeout:     90 * time.Second,
}}

// WaitAppliedIn is WaitApplied in the Consul datacenter dc; "" is the client's own.
//
// Consul says which nodes are passing and, in their service metadata, the version each published.
// A passing node that has not published the version yet is also asked directly, at its service
// address, on VersionPath (long-polled: it answers the moment its pools hold the version), so the
// wait ends one round trip after the last node applied it rather than after its registration
// reached the catalog. Either answer is the node's own statement that its pools hold the version;
// a node that cannot be asked (an older binary, a network that does not reach it) is waited for
// through Consul alone. The set of nodes waited for is always Consul's passing set.
func WaitAppliedIn(ctx context.Context, c *consul.Client, dc, service string, version uint64) error {
	return WaitAppliedWith(ctx, c, dc, service, version, WaitOptions{})
}

// WaitOptions tune WaitAppliedWith.
type WaitOptions struct {
	// RegistrationsOnly waits for the nodes' Consul registrations alone, without asking the nodes:
	// for a waiter that cannot reach them, and as the baseline the direct asks are measured against.
	RegistrationsOnly bool
}

// WaitAppliedWith is WaitAppliedIn with options.
func WaitAppliedWith(ctx context.Context, c *consul.Client, dc, service string, version uint64, opts WaitOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type listing struct {
		nodes []Node
		err   error
	}
	lists := make(chan listing, 1)
	go func() {
		var index uint64
		failures := 0
		for {
			nodes, next, err := query(ctx, c, dc, service, index)
			if ctx.Err() != nil {
				return
			}
			select {
			case lists <- listing{nodes, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				failures++
				index = 0
				if !sleep(ctx, backoff(failures)) {
					return
				}
				continue
			}
			failures, index = 0, next
		}
	}()
	type answer struct {
		id      string
		version uint64
	}
	answers := make(chan answer, 16)
	asked := map[string]bool{}
	direct := map[string]uint64{}
	var (
		nodes   []Node
		listed  bool
		lastErr error
	)
	lagging := func() []Node {
		var out []Node
		for _, n := range nodes {
			if n.Passing && max(n.Version, direct[n.ID]) < version {
				out = append(out, n)
			}
		}
		return out
	}
	for {
		select {
		case l := <-lists:
			if l.err != nil {
				lastErr = l.err
				break
			}
			nodes, listed, lastErr = l.nodes, true, nil
			for _, n := range lagging() {
				if asked[n.ID] || opts.RegistrationsOnly {
					continue
				}
				asked[n.ID] = true
				go func(n Node) {
					if v, ok := ask(ctx, n.Address, version); ok {
						select {
						case answers <- answer{n.ID, v}:
						case <-ctx.Done():
						}
					}
				}(n)
			}
		case a := <-answers:
			direct[a.id] = max(direct[a.id], a.version)
		case <-ctx.Done():
			return &NotAppliedError{Service: service, Version: version, Lagging: lagging(), Err: ctx.Err(), Consul: lastErr}
		}
		if listed && len(lagging()) == 0 {
			return nil
		}
	}
}

// ask long-polls the node at addr until it says it holds version (true, with the version it holds)
// or ctx ends. A node that answers something else than the version (a 404 from an older binary) is
// not asked again: false, and the wait goes on through Consul. A node that cannot be reached is asked
// again after a back-off.
func ask(ctx context.Context, addr string, version uint64) (uint64, bool) {
	u := (&url.URL{Scheme: "http", Host: addr, Path: VersionPath,
		RawQuery: url.Values{"min": {strconv.FormatUint(version, 10)}, "wait": {askWait.String()}}.Encode()}).String()
	failures := 0
	for ctx.Err() == nil {
		v, err := askOnce(ctx, u)
		switch {
		case err == nil && v >= version:
			return v, true
		case err == nil:
			failures = 0 // the wait ran out at the node: ask again
		case errors.Is(err, errNotAsked):
			return 0, false
		default:
			failures++
			if !sleep(ctx, backoff(failures)) {
				return 0, false
			}
		}
	}
	return 0, false
}

var errNotAsked = errors.New("fleet: the node does not answer its topology version")

func askOnce(ctx context.Context, u string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, askWait+2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, errNotAsked
	}
	resp, err := askClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		if resp.StatusCode >= 500 {
			return 0, fmt.Errorf("fleet: %s: %s", u, resp.Status)
		}
		return 0, errNotAsked
	}
	var body struct {
		Version *uint64 `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body); err != nil || body.Version == nil {
		return 0, errNotAsked
	}
	return *body.Version, nil
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
