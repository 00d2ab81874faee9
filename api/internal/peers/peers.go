// Package peers lets an API node call the API nodes of other regions (global search, the email
// directory): it picks a healthy node of the region among those internal/discovery follows in Consul,
// calls it over mutual TLS with the node's certificate (internal/mtls), and turns the answer into a value or an *apierror.Error.
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
	"sync"
	"time"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/breaker"
	"github.com/8thdegree/meridian/internal/discovery"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/requestid"
	"github.com/8thdegree/meridian/internal/wire"
)

// maxAnswer bounds a peer's answer.
const maxAnswer = 8 << 20

// Call sends one request to baseURL+path and decodes a 2xx JSON answer into out. The caller's identity
// is the client certificate of client's transport.
func Call(ctx context.Context, client *http.Client, baseURL, method, path string, body, out any) error {
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

// ErrNoHealthyNode is returned when a region has no passing API node in Consul.
var ErrNoHealthyNode = errors.New("no healthy API node in the region")

// Nodes says which nodes of a region are healthy: *discovery.Watcher, which the node runs on its
// topology.
type Nodes interface {
	Snapshot(region string) (discovery.Snapshot, bool)
}

var _ Nodes = (*discovery.Watcher)(nil)

// Client calls the healthy API nodes of other regions, as internal/discovery follows them in Consul.
type Client struct {
	nodes    Nodes
	tls      *mtls.Source
	wrap     func(http.RoundTripper) http.RoundTripper
	scheme   string
	breakers *breaker.Set

	mu      sync.Mutex
	clients map[string]*http.Client // per region
}

var _ feature.Peers = (*Client)(nil)

// Options are the optional parts of a peers client.
type Options struct {
	// WrapTransport wraps the HTTP transport: middleware.Tracing.Transport, so that peer calls carry the trace.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Breakers, when set, guards each region's calls with its own circuit breaker (NewBreakers): while a
	// region's nodes keep failing, calls to it fail at once with 503 region_unavailable.
	Breakers *breaker.Set
}

// New returns a Client that picks among nodes' healthy nodes of a region and calls them over mutual
// TLS with the node's certificate (src), accepting as the server only an API node of that region
// (mtls.NodeOf): a password forwarded to a region reaches that region's node or nobody. A nil src calls
// over plain HTTP (MERIDIAN_TLS=off, where no node accepts internal calls; single-node tests only).
func New(nodes Nodes, src *mtls.Source, opts Options) *Client {
	scheme := "http"
	if src != nil {
		scheme = "https"
	}
	return &Client{nodes: nodes, tls: src, wrap: opts.WrapTransport, scheme: scheme, breakers: opts.Breakers, clients: map[string]*http.Client{}}
}

// client is the HTTP client of calls to region, made on first use.
func (c *Client) client(region string) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.clients[region]; ok {
		return hc
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		TLSHandshakeTimeout: 2 * time.Second,
	}
	if c.tls != nil {
		tr.TLSClientConfig = c.tls.ClientConfig(mtls.NodeOf(region))
	}
	var rt http.RoundTripper = tr
	if c.wrap != nil {
		rt = c.wrap(rt)
	}
	hc := &http.Client{Transport: rt}
	c.clients[region] = hc
	return hc
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
func (c *Client) Call(ctx context.Context, region, method, path string, body, out any) error {
	addrs, err := c.addrs(region)
	if err != nil {
		return err
	}
	addr := addrs[rand.IntN(len(addrs))]
	return c.callNode(ctx, region, c.scheme+"://"+addr.Addr, method, path, body, out)
}

func (c *Client) callNode(ctx context.Context, region, baseURL, method, path string, body, out any) error {
	hc := c.client(region)
	if c.breakers == nil {
		return Call(ctx, hc, baseURL, method, path, body, out)
	}
	err := c.breakers.Get(region).Do(ctx, func(ctx context.Context) error {
		return Call(ctx, hc, baseURL, method, path, body, out)
	})
	if errors.Is(err, breaker.ErrOpen) {
		return apierror.RegionUnavailable(region, time.Second).WithCause(err)
	}
	return err
}

// addrs returns the region's healthy nodes, never an empty list.
func (c *Client) addrs(region string) ([]discovery.Node, error) {
	s, ok := c.nodes.Snapshot(region)
	switch {
	case !ok:
		return nil, fmt.Errorf("peers: unknown region %q (not in the topology in service)", region)
	case !s.Known:
		return nil, fmt.Errorf("peers: region %s: %w (consul has not answered yet)", region, ErrNoHealthyNode)
	case len(s.Nodes) == 0:
		return nil, fmt.Errorf("peers: region %s: %w", region, ErrNoHealthyNode)
	}
	return s.Nodes, nil
}
