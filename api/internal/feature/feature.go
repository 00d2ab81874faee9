// Package feature is what every feature of the API node shares: the node's region, the shard pools, Redis,
// the ID generator, the clock, calls to other regions' nodes, and the Route type through which feature
// packages declare their endpoints (path, access rule, handler and OpenAPI description) to the server.
package feature

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Peers calls other regions' API nodes (global search, the email directory).
type Peers interface {
	// Call sends a request to a healthy API node of region and decodes a 2xx JSON answer into out (if
	// non-nil). A non-2xx answer comes back as an *apierror.Error with the peer's status and code.
	Call(ctx context.Context, region, method, path string, body, out any) error
}

// Deps holds the node's shared dependencies. Fields are set once at start and read-only afterwards.
type Deps struct {
	// Region is the name of this node's region.
	Region string
	Pools  *shardpool.Manager
	// Redis is the region's Redis: rate limits and caches. Features must keep working when it is down.
	Redis redis.UniversalClient
	IDs   *shardkey.Generator
	Log   *slog.Logger
	Now   func() time.Time
	Peers Peers
	// FreezeWait bounds how long a write to a frozen keyrange waits for the cutover to finish.
	FreezeWait time.Duration
}

// Topology returns the compiled topology in force.
func (a *Deps) Topology() *topology.Table { return a.Pools.Table() }

// RegionCode returns the keyspace code of this node's region.
func (a *Deps) RegionCode() (shardkey.Region, bool) {
	tab := a.Pools.Table()
	if tab == nil {
		return 0, false
	}
	r, ok := tab.Topology().Region(a.Region)
	return r.Code, ok
}

// ReadShard returns the shard of this region that holds k's data. While k's keyrange is frozen for a
// cutover it waits (up to FreezeWait) for the next topology, as a write does, and then answers with the
// keyrange's owner: a read at the source during the flip's propagation could miss a write another node
// already took at the target. Its errors are shardpool's (a *shardpool.WrongRegionError for data homed
// elsewhere, shardpool.ErrNoTopology, topology.ErrNoShard, shardpool.ErrFrozen, ctx's error);
// rest.WriteError turns them into the replay hint, 503 or 404.
func (a *Deps) ReadShard(ctx context.Context, k shardkey.KeyspaceID) (shardpool.Routed, error) {
	return a.Pools.ReadShard(ctx, k, a.Region, a.FreezeWait)
}

// WriteShard is ReadShard for writes: while k's keyrange is frozen for a cutover, it waits (up to
// FreezeWait) for the next topology and then answers with the keyrange's owner, or shardpool.ErrFrozen.
func (a *Deps) WriteShard(ctx context.Context, k shardkey.KeyspaceID) (shardpool.Routed, error) {
	return a.Pools.WriteShard(ctx, k, a.Region, a.FreezeWait)
}

// ReadRegion returns this region's shards, and the table of the same version, for a read that fans
// out over them (shardpool.Scatter). While a keyrange of the region is frozen for a cutover it waits
// (up to FreezeWait) as ReadShard does; errors as ReadShard's.
func (a *Deps) ReadRegion(ctx context.Context) (shardpool.RegionView, error) {
	return a.Pools.ReadRegion(ctx, a.Region, a.FreezeWait)
}

// HandlerFunc is an HTTP handler that returns its error; the server writes it with rest.WriteError.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

var _ http.Handler = HandlerFunc(nil)

// ServeHTTP lets a HandlerFunc stand where an http.Handler is expected.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		rest.WriteError(w, r, err)
	}
}

// Access says who may call a route.
type Access int

const (
	// Public routes need no credentials (registration, login, public profiles).
	Public Access = iota
	// Authenticated routes need a valid access token or API key.
	Authenticated
	// Internal routes are node-to-node only: they need the internal secret.
	Internal
)

// Route is one endpoint a feature package declares.
type Route struct {
	// Name is the OpenAPI operationId and the metrics label.
	Name   string
	Method string
	// Path is relative to /api/v1 (the server also serves the /api alias), in gorilla/mux syntax.
	Path   string
	Access Access
	// Roles, when set, are the only roles allowed.
	Roles []authn.Role
	// Scope is the API-key scope needed (tokens have every scope).
	Scope   string
	Handler HandlerFunc
	// Doc is the OpenAPI Operation object (summary, parameters, requestBody, responses), without
	// operationId, which is Name.
	Doc map[string]any
}

// Caller returns the authenticated principal of an Authenticated route's request.
func Caller(r *http.Request) authn.Principal {
	p, _ := authn.From(r.Context())
	return p
}

// Task is a named background job of the node (an embedding worker, an index builder, an outbox
// sender): Node.Run runs every task until its context is done, and a task that fails stops the node.
// A task returns nil when ctx is done.
type Task struct {
	Name string
	Run  func(ctx context.Context) error
}

// InternalPath is where a node serves one of its Internal routes to its peers.
func InternalPath(p string) string { return "/api/v1" + p }

// PeerError turns a failed Peers.Call into the answer for the client: the peer's own 4xx passes
// through (but not its 421, a routing matter between nodes); a peer that cannot be reached or fails
// is 503 region_unavailable naming the region; a request that ended is its context's error.
func PeerError(ctx context.Context, region string, err error) error {
	var e *apierror.Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusMisdirectedRequest {
		return e
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &apierror.Error{Status: http.StatusServiceUnavailable, Code: "region_unavailable", RetryAfter: 5 * time.Second,
		Message: "the region " + region + ", which this request needs, is unavailable; retry later",
		Cause:   fmt.Errorf("peer %s: %w", region, err)}
}
