package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/router/internal/upstream"
)

// OpsHandler serves the router's own /healthz, /readyz and /metrics (for a separate ops listener).
func (g *Gateway) OpsHandler() http.Handler { return g.ops }

func (g *Gateway) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "region": g.cfg.Region})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, missing := g.deps.Ready()
		if !ok {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "region": g.cfg.Region, "waiting_for": missing})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "region": g.cfg.Region})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.m.Registry, promhttp.HandlerOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()[wire.Region] = []string{g.cfg.Region}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// maxJWKS bounds a key set document.
const maxJWKS = 256 << 10

// JWKS fetches the nodes' key set from a node of the router's own region, or, when it has none
// available, of another region (every region publishes the same keys). It implements tokenkeys.Source.
func (g *Gateway) JWKS(ctx context.Context) ([]byte, error) {
	pools := g.deps.Pools.Pools()
	regions := make([]string, 0, len(pools))
	for name := range pools {
		if name != g.cfg.Region {
			regions = append(regions, name)
		}
	}
	slices.Sort(regions)
	if _, ok := pools[g.cfg.Region]; ok {
		regions = append([]string{g.cfg.Region}, regions...)
	}
	var errs []error
	for _, region := range regions {
		var tried []*upstream.Node
		for range 2 {
			node, err := pools[region].Pick(tried)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", region, err))
				break
			}
			tried = append(tried, node)
			b, err := g.fetchJWKS(ctx, node)
			if err == nil {
				return b, nil
			}
			errs = append(errs, fmt.Errorf("%s node %s: %w", region, node.ID, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("gateway: no region to fetch the key set from")
	}
	return nil, errors.Join(errs...)
}

func (g *Gateway) fetchJWKS(ctx context.Context, node *upstream.Node) ([]byte, error) {
	release := node.Acquire()
	defer release()
	u := &url.URL{Scheme: g.scheme(), Host: node.Addr, Path: g.cfg.JWKSPath}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := g.deps.Transports(node.Region).RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", g.cfg.JWKSPath, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKS {
		return nil, fmt.Errorf("GET %s: the key set is larger than %d bytes", g.cfg.JWKSPath, maxJWKS)
	}
	return b, nil
}

// scheme is the scheme of calls to nodes.
func (g *Gateway) scheme() string {
	if g.cfg.UpstreamScheme == "" {
		return "https"
	}
	return g.cfg.UpstreamScheme
}
