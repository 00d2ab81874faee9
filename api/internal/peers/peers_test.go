package peers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/breaker"
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Meridian-Internal") != "s3cret" {
			t.Error("no internal secret")
		}
		if code := int(status.Load()); code != 200 {
			rest.WriteError(w, r, &apierror.Error{Status: code, Code: "x", Message: "x"})
			return
		}
		rest.WriteJSON(w, 200, map[string]string{"ok": "yes"})
	}))
	defer srv.Close()
	var ct *countingTransport
	c := NewConsulWith(nil, nil, "s3cret", 0, Options{
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
	if err := c.callNode(ctx, "ap-south", srv.URL, "GET", "/x", nil, &out); err != nil || out["ok"] != "yes" {
		t.Fatalf("ap-south: %v %v", out, err)
	}
}
