package peers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/breaker"
	"github.com/8thdegree/meridian/internal/discovery"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/mtls/mtlstest"
)

type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// A region whose nodes keep failing is cut off by its breaker; a peer's 4xx answers are no failure.
func TestBreakerPerRegion(t *testing.T) {
	var status atomic.Int64
	status.Store(500)
	pki := mtlstest.New(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := mtls.FromRequest(r); !ok || id != mtls.Node("us-east", "n1") {
			t.Errorf("the caller's identity: %v %v", id, ok)
		}
		if code := int(status.Load()); code != 200 {
			rest.WriteError(w, r, &apierror.Error{Status: code, Code: "x", Message: "x"})
			return
		}
		rest.WriteJSON(w, 200, map[string]string{"ok": "yes"})
	})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = pki.Source(t, mtls.Node("eu-west", "n2")).ServerConfig(nil)
	srv.StartTLS()
	defer srv.Close()
	apSouth := httptest.NewUnstartedServer(h)
	apSouth.TLS = pki.Source(t, mtls.Node("ap-south", "n3")).ServerConfig(nil)
	apSouth.StartTLS()
	defer apSouth.Close()
	var ct *countingTransport
	c := New(nil, pki.Source(t, mtls.Node("us-east", "n1")), Options{
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { ct = &countingTransport{base: rt}; return ct },
		Breakers:      NewBreakers(nil, nil),
	})
	ctx := context.Background()

	status.Store(404)
	for range 10 {
		var e *apierror.Error
		if err := c.callNode(ctx, "eu-west", srv.URL, "GET", "/x", nil, nil); !errors.As(err, &e) || e.Status != 404 {
			t.Fatalf("404 from the peer: %v", err)
		}
	}
	status.Store(500)
	fails := int(breaker.DefaultConfig("x").Failures)
	for range fails {
		if err := c.callNode(ctx, "eu-west", srv.URL, "GET", "/x", nil, nil); errors.Is(err, breaker.ErrOpen) {
			t.Fatal("opened before the threshold")
		}
	}
	sent := ct.n.Load()
	err := c.callNode(ctx, "eu-west", srv.URL, "GET", "/x", nil, nil)
	var e *apierror.Error
	if !errors.Is(err, breaker.ErrOpen) || !errors.As(err, &e) || e.Status != 503 || e.Code != "region_unavailable" {
		t.Fatalf("after %d failures: %v", fails, err)
	}
	if ct.n.Load() != sent {
		t.Error("a request was sent through an open breaker")
	}
	// Another region has its own breaker.
	status.Store(200)
	var out map[string]string
	if err := c.callNode(ctx, "ap-south", apSouth.URL, "GET", "/x", nil, &out); err != nil || out["ok"] != "yes" {
		t.Fatalf("ap-south: %v %v", out, err)
	}
	// A call to a region is sent only to a node of that region, whatever address it was given: a node
	// of eu-west behind an ap-south address is refused at the handshake, before the request is sent.
	if err := c.callNode(ctx, "ap-south", srv.URL, "GET", "/x", nil, nil); err == nil || !strings.Contains(err.Error(), "not an API node of ap-south") {
		t.Fatalf("ap-south call answered by an eu-west node: %v", err)
	}
}

type fakeNodes map[string]discovery.Snapshot

func (f fakeNodes) Snapshot(region string) (discovery.Snapshot, bool) {
	s, ok := f[region]
	return s, ok
}

// A call goes to a healthy node of the region; a region with none, or not heard of yet, fails at once.
func TestCallPicksAHealthyNode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest.WriteJSON(w, 200, map[string]string{"ok": "yes"})
	}))
	defer srv.Close()
	nodes := fakeNodes{
		"eu-west":  {Region: discovery.Region{Name: "eu-west"}, Known: true, Nodes: []discovery.Node{{ID: "n/a", Addr: srv.Listener.Addr().String()}}},
		"us-east":  {Region: discovery.Region{Name: "us-east"}, Known: true},
		"ap-south": {Region: discovery.Region{Name: "ap-south"}},
	}
	c := New(nodes, nil, Options{})
	var out map[string]string
	if err := c.Call(context.Background(), "eu-west", "GET", "/x", nil, &out); err != nil || out["ok"] != "yes" {
		t.Fatalf("eu-west: %v %v", out, err)
	}
	for _, region := range []string{"us-east", "ap-south"} {
		if err := c.Call(context.Background(), region, "GET", "/x", nil, nil); !errors.Is(err, ErrNoHealthyNode) {
			t.Errorf("%s: %v, want ErrNoHealthyNode", region, err)
		}
	}
	if err := c.Call(context.Background(), "mars", "GET", "/x", nil, nil); err == nil || errors.Is(err, ErrNoHealthyNode) {
		t.Errorf("a region not in the topology: %v", err)
	}
}
