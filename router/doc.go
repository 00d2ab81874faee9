// Package router is Meridian's edge router: the process clients talk to. For every request it
// decides, with no database lookup, which region holds the data the request is about (from the
// verified access token, the API key's ID, the IDs in the path or query, or the body of the few auth
// endpoints that need it), picks a healthy API node of that region from Consul, and proxies the request
// to it. A node that is handed data it does not hold answers 421 with the right region, and the router
// replays the request there once; a region with no available node gets a fast 503 region_unavailable,
// and its users' requests never go to another region.
//
// At the edge it also enforces rate limits per client IP and per principal (shared by the region's
// routers through Redis), the request body limit, and header hygiene (X-Forwarded-*, X-Request-ID and
// every X-Meridian-* header are the router's, never the client's), propagates W3C trace context, and
// writes an access log and Prometheus metrics.
//
// Use:
//
//	cfg := router.DefaultConfig()
//	cfg.Region, cfg.ConsulAddr = "eu-west", "127.0.0.1:8500"
//	cfg.TokenIssuer, cfg.TokenAudience = "https://meridian.example", "meridian-api"
//	r, err := router.New(cfg, logger)
//	...
//	err = r.Serve(ctx, listener) // until ctx is done, then a graceful shutdown
//
// docs/router.md describes the behaviour for operators: resolution order, node picking, replay,
// failures, headers, limits and metrics.
package router
