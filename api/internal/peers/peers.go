// Package peers lets an API node call the API nodes of other regions (global search, the email
// directory): it finds a healthy node of the region in Consul's catalog, authenticates with the
// node-to-node secret, and turns the answer into a value or an *apierror.Error.
package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/breaker"
	"github.com/8thdegree/meridian/internal/requestid"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// maxAnswer bounds a peer's answer.
const maxAnswer = 8 << 20

// Call sends one request to baseURL+path with the internal secret and decodes a 2xx JSON answer into out.
func Call(ctx context.Context, client *http.Client, baseURL, internalToken, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(wire.Internal, internalToken)
	if rid := requestid.From(ctx); rid != "" {
		req.Header.Set(wire.RequestID, rid)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("peer %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("peer %s: reading the answer: %w", baseURL, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Code    string            `json:"code"`
				Message string            `json:"message"`
				Fields  map[string]string `json:"fields"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
			return fmt.Errorf("peer %s: status %d", baseURL, resp.StatusCode)
		}
		return &apierror.Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, Fields: e.Error.Fields}
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("peer %s: bad answer: %w", baseURL, err)
	}
	return nil
}

// ErrNoHealthyNode is returned when a region has no passing API node in the catalog.
var ErrNoHealthyNode = errors.New("no healthy API node in the region")

// Consul finds peers in Consul's catalog: the passing instances of each region's API service.
type Consul struct {
	client   *consul.Client
	topology func() *topology.Table
	http     *http.Client
	secret   string
	ttl      time.Duration
	breakers *breaker.Set

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	addrs []string
	at    time.Time
}

var _ feature.Peers = (*Consul)(nil)

// NewConsul returns a Peers that looks nodes up in Consul, caching each region's list for ttl.
func NewConsul(client *consul.Client, topo func() *topology.Table, secret string, ttl time.Duration) *Consul {
	return NewConsulWith(client, topo, secret, ttl, Options{})
}

// Options are the optional parts of a Consul peers client.
type Options struct {
	// WrapTransport wraps the HTTP transport: middleware.Tracing.Transport, so that peer calls carry the trace.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Breakers, when set, guards each region's calls with its own circuit breaker (NewBreakers): while a
	// region's nodes keep failing, calls to it fail at once with 503 region_unavailable.
	Breakers *breaker.Set
}

// NewConsulWith is NewConsul with options.
func NewConsulWith(client *consul.Client, topo func() *topology.Table, secret string, ttl time.Duration, opts Options) *Consul {
	var rt http.RoundTripper = &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}
	if opts.WrapTransport != nil {
		rt = opts.WrapTransport(rt)
	}
	return &Consul{
		client:   client,
		topology: topo,
		secret:   secret,
		ttl:      ttl,
		breakers: opts.Breakers,
		cache:    map[string]cached{},
		http:     &http.Client{Transport: rt},
	}
}

// NewBreakers returns the per-region breakers for Options.Breakers: breaker.DefaultConfig named
// "peer:<region>", where an answer below 500 (a peer's 404 or 400) counts as the peer being healthy.
func NewBreakers(log *slog.Logger, metrics *breaker.Metrics) *breaker.Set {
	cfg := breaker.DefaultConfig("peer")
	cfg.Healthy = func(err error) bool {
		var e *apierror.Error
		return errors.As(err, &e) && e.Status < 500
	}
	s, _ := breaker.NewSet(cfg, log, metrics) // the defaults are valid
	return s
}

// Call implements feature.Peers.
func (c *Consul) Call(ctx context.Context, region, method, path string, body, out any) error {
	addrs, err := c.nodes(ctx, region)
	if err != nil {
		return err
	}
	addr := addrs[rand.IntN(len(addrs))]
	return c.callNode(ctx, region, "http://"+addr, method, path, body, out)
}

func (c *Consul) callNode(ctx context.Context, region, baseURL, method, path string, body, out any) error {
	if c.breakers == nil {
		return Call(ctx, c.http, baseURL, c.secret, method, path, body, out)
	}
	err := c.breakers.Get(region).Do(ctx, func(ctx context.Context) error {
		return Call(ctx, c.http, baseURL, c.secret, method, path, body, out)
	})
	if errors.Is(err, breaker.ErrOpen) {
		return apierror.RegionUnavailable(region, time.Second).WithCause(err)
	}
	return err
}

func (c *Consul) nodes(ctx context.Context, region string) ([]string, error) {
	c.mu.Lock()
	e, ok := c.cache[region]
	c.mu.Unlock()
	if ok && time.Since(e.at) < c.ttl && len(e.addrs) > 0 {
		return e.addrs, nil
	}
	tab := c.topology()
	if tab == nil {
		return nil, errors.New("peers: no topology")
	}
	r, ok := tab.Topology().Region(region)
	if !ok {
		return nil, fmt.Errorf("peers: unknown region %q", region)
	}
	entries, _, err := c.client.Health().Service(r.APIService, "", true, (&consul.QueryOptions{Datacenter: r.ConsulDC}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("peers: looking up %s: %w", r.APIService, err)
	}
	var addrs []string
	for _, en := range entries {
		host := en.Service.Address
		if host == "" {
			host = en.Node.Address
		}
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(en.Service.Port)))
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("peers: region %s: %w", region, ErrNoHealthyNode)
	}
	c.mu.Lock()
	c.cache[region] = cached{addrs: addrs, at: time.Now()}
	c.mu.Unlock()
	return addrs, nil
}
