// Package gateway is the router's request path: for each request it checks the edge's rules (API paths
// only, body size, rate limits, credentials), decides the home region (package resolve), picks a node
// there (package upstream), proxies, retries on another node when that is safe, replays once in the
// region a node names, and writes the one access-log line and the metrics.
//
// The proxy is a lean one of its own rather than httputil.ReverseProxy: the request the server hands
// the handler is the router's own, so its header map is cleaned in place and reused upstream instead
// of cloned; the upstream response's header slices are moved, not copied; the body goes through the
// server's pooled ReadFrom; and there is no per-request ClientTrace for 1xx answers, which the API
// never sends. The benchmark in bench/router measures what that buys against ReverseProxy.
package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/ratelimit/admission"
	"github.com/8thdegree/meridian/internal/requestid"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/router/internal/accesslog"
	"github.com/8thdegree/meridian/router/internal/apipath"
	"github.com/8thdegree/meridian/router/internal/credential"
	"github.com/8thdegree/meridian/router/internal/headers"
	"github.com/8thdegree/meridian/router/internal/metrics"
	"github.com/8thdegree/meridian/router/internal/resolve"
	"github.com/8thdegree/meridian/router/internal/tokenkeys"
	"github.com/8thdegree/meridian/router/internal/traceparent"
	"github.com/8thdegree/meridian/router/internal/upstream"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Config is the gateway's part of the router's configuration.
type Config struct {
	// Region is the router's own region.
	Region string
	// MaxBody is the largest request body accepted (413 above).
	MaxBody int64
	// BodyTimeout bounds the reading of one request's body (408 after it; 0: no bound).
	BodyTimeout time.Duration
	// MaxBuffered bounds the bytes of request bodies held at once by every request together (503
	// above). It must be at least MaxBody.
	MaxBuffered int64
	Trust       headers.Trust
	// IPLimit and PrincipalLimit are the edge's rate limits; a zero Limit is no limit.
	IPLimit, PrincipalLimit ratelimit.Limit
	// MaxAttempts bounds the nodes tried for one request in one region.
	MaxAttempts int
	// JWKSPath is the path of the nodes' key set.
	JWKSPath string
	// VerifiedKeys bounds the API keys remembered as verified by a node, each for VerifiedKeyTTL.
	VerifiedKeys   int
	VerifiedKeyTTL time.Duration
	// UpstreamScheme is how nodes are called: "https" (mutual TLS, the transport presents the
	// router's certificate) or "http" (plain, tests only). Empty is "https".
	UpstreamScheme string
}

// Deps are the parts the gateway uses.
type Deps struct {
	Log      *slog.Logger
	Metrics  *metrics.Metrics
	Pools    *upstream.Regions
	Verifier *tokenkeys.Verifier
	Limiter  *admission.Limiter
	// Transports is the transport of calls to region's nodes. Each region has its own, so that a
	// connection made to (and verified as) one region's node never carries another region's requests.
	Transports func(region string) http.RoundTripper
	// Ready reports whether the router may take traffic, and if not, what it waits for.
	Ready func() (bool, []string)
	// AccessLog, if set, writes the access log; else its lines go through Log.
	AccessLog *accesslog.Writer
}

var _ http.Handler = (*Gateway)(nil)

// Gateway is the router's http.Handler.
type Gateway struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics.Metrics
	tab  atomic.Pointer[topology.Table]
	ops  http.Handler
	// logq feeds RunAccessLog while logging is set.
	logq    chan accessLine
	logging atomic.Bool
	// buffered is the bytes request bodies hold now (reserve, release).
	buffered atomic.Int64
	// keys maps the SHA-256 of an API key a node verified (the whole credential, secret included, so
	// a made-up secret never matches) to when that stops counting (unix ns).
	keys *lru.Cache[[sha256.Size]byte, int64]
}

// New returns a Gateway. SetTable must be called before it routes anything.
func New(cfg Config, deps Deps) (*Gateway, error) {
	switch {
	case cfg.Region == "":
		return nil, errors.New("gateway: Region is required")
	case cfg.MaxBody <= 0:
		return nil, errors.New("gateway: MaxBody must be positive")
	case cfg.MaxBuffered < cfg.MaxBody:
		return nil, errors.New("gateway: MaxBuffered must be at least MaxBody")
	case cfg.MaxAttempts < 1:
		return nil, errors.New("gateway: MaxAttempts must be at least 1")
	case cfg.VerifiedKeys < 1 || cfg.VerifiedKeyTTL <= 0:
		return nil, errors.New("gateway: VerifiedKeys and VerifiedKeyTTL must be positive")
	case deps.Metrics == nil || deps.Pools == nil || deps.Verifier == nil || deps.Limiter == nil || deps.Transports == nil || deps.Ready == nil:
		return nil, errors.New("gateway: every dependency is required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, deps: deps, log: deps.Log, m: deps.Metrics, logq: make(chan accessLine, 4096)}
	var err error
	if g.keys, err = lru.New[[sha256.Size]byte, int64](cfg.VerifiedKeys); err != nil {
		return nil, err
	}
	g.ops = g.opsHandler()
	return g, nil
}

// SetTable puts a compiled topology in service.
func (g *Gateway) SetTable(t *topology.Table) { g.tab.Store(t) }

// Table returns the compiled topology in service (nil before the first).
func (g *Gateway) Table() *topology.Table { return g.tab.Load() }

// exchange is one request's state, for the access log and metrics.
type exchange struct {
	rid      string
	start    time.Time
	route    string
	status   int
	bytes    int64
	region   string // upstream region ("" when the router answered itself)
	node     string
	attempts int
	by       resolve.Reason
	replayed string // the region that sent the replay hint
	client   string
	trace    traceparent.Context
	user     string
	bearer   string // the verified access token, if the request carried one
	// key is the API key's state, when the caller sent one.
	key   keyState
	code  string // error code of a response the router made
	cause error
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := exchange{rid: requestid.New(), start: time.Now(), route: apipath.OtherTemplate}
	w.Header()[wire.RequestID] = []string{x.rid}
	g.m.InFlight(1)
	defer g.m.InFlight(-1)
	g.serve(w, r, &x)
	g.finish(r, &x)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, x *exchange) {
	info, ok := apipath.Parse(r.URL.Path)
	if !ok {
		// Not the public API: a node's own paths (/metrics, /healthz, ...), and the router's, which are on
		// its ops listener only, are never reachable from outside.
		g.fail(w, x, apierror.NotFound("route"))
		return
	}
	x.route = info.Template
	client := g.cfg.Trust.ClientOf(r)
	x.client = client.IP.String()
	var continued bool
	x.trace, continued = traceparent.Next(r.Header.Get(traceparent.Header))
	var tracestate []string
	if continued {
		tracestate = r.Header.Values(traceparent.StateHeader)
	}
	headers.Sanitize(r.Header)

	if !g.admit(w, r, x, "ip", "edge:ip:"+client.LimitKey(), g.cfg.IPLimit) {
		return
	}
	caller, principal, ok := g.authenticate(w, r, x, info)
	if !ok {
		return
	}
	if principal != "" && !g.admit(w, r, x, "principal", principal, g.cfg.PrincipalLimit) {
		return
	}
	if x.key.sent {
		defer g.settleKey(r, x)
	}
	body, held, ok := g.readBody(w, r, x)
	if !ok {
		return
	}
	defer g.release(held)
	tab := g.tab.Load()
	if tab == nil {
		g.fail(w, x, apierror.Unavailable("the router has no topology yet; retry shortly", time.Second))
		return
	}
	req := resolve.Request{Info: info, RawQuery: r.URL.RawQuery, Caller: caller}
	if info.Endpoint == apipath.Register || info.Endpoint == apipath.Refresh || info.Endpoint == apipath.Logout {
		req.Body = body
	}
	target, err := resolve.Resolve(tab, g.cfg.Region, req)
	x.by = target.By
	if err != nil {
		g.fail(w, x, apierror.NotFound("object").WithCause(err))
		return
	}

	h := r.Header
	headers.SetForwarded(h, client)
	h[wire.RequestID] = []string{x.rid}
	h[traceparent.Header] = []string{x.trace.String()}
	if len(tracestate) > 0 {
		h[traceparent.StateHeader] = tracestate
	}
	g.forward(w, r, x, target.Region, body)
}

// admit applies one rate limit.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, x *exchange, name, key string, lim ratelimit.Limit) bool {
	if lim == (ratelimit.Limit{}) {
		return true
	}
	res := g.deps.Limiter.Allow(r.Context(), key, lim)
	if res.Allowed {
		return true
	}
	g.m.Limited(name)
	ratelimit.SetHeaders(w.Header(), res)
	g.fail(w, x, apierror.RateLimited(res.RetryAfter))
	return false
}

// authenticate reads the Authorization header: a Bearer token is verified here (401 if it is not
// valid), an API key only parsed (the node checks its secret). principal is the rate-limit key to
// charge now ("" for none).
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, x *exchange, info apipath.Info) (resolve.Caller, string, bool) {
	scheme, cred := credential.Authorization(r.Header.Get("Authorization"))
	switch scheme {
	case credential.Bearer:
		id, err := g.deps.Verifier.Verify(r.Context(), cred)
		if err != nil && info.Endpoint.TokenOptional() {
			// The client is here because its token may have expired: route as if it sent none.
			return resolve.Caller{}, "", true
		}
		switch {
		case errors.Is(err, tokenkeys.ErrNoKeys):
			g.fail(w, x, apierror.Unavailable("the router cannot verify tokens yet; retry shortly", time.Second).WithCause(err))
			return resolve.Caller{}, "", false
		case errors.Is(err, accesstoken.ErrExpired):
			g.fail(w, x, apierror.Unauthenticated("the access token has expired").WithCause(err))
			return resolve.Caller{}, "", false
		case errors.Is(err, accesstoken.ErrRevoked):
			g.fail(w, x, apierror.Unauthenticated("the session of this access token has ended; log in again").WithCause(err))
			return resolve.Caller{}, "", false
		case err != nil:
			g.fail(w, x, apierror.Unauthenticated("invalid access token").WithCause(err))
			return resolve.Caller{}, "", false
		}
		x.user, x.bearer = id.UserID, cred
		return resolve.Caller{KSID: id.Subject.KSID, By: resolve.Token}, "edge:user:" + id.UserID, true
	case credential.APIKey:
		kid, err := credential.APIKeyID(cred)
		if err != nil {
			g.fail(w, x, apierror.Unauthenticated("malformed API key").WithCause(err))
			return resolve.Caller{}, "", false
		}
		x.user = kid.String()
		x.key = keyState{sent: true, sum: sha256.Sum256([]byte(cred))}
		caller := resolve.Caller{KSID: kid.KeyspaceID(), By: resolve.APIKey}
		if exp, ok := g.keys.Get(x.key.sum); ok && time.Now().UnixNano() < exp {
			// A node verified this very key lately: its own budget pays, up front.
			return caller, "edge:key:" + x.user, true
		}
		// Not known to be verified (a first request, or a made-up secret with someone's key ID): only
		// the client's IP budget pays now; the key's is charged once a node says it verified the key
		// (settleKey), so bogus secrets can never spend a real key's budget.
		x.key.pending = true
		return caller, "", true
	}
	return resolve.Caller{}, "", true
}

// keyState is what the router knows of a request's API key.
type keyState struct {
	sent bool
	sum  [sha256.Size]byte
	// pending: the key was not known to be verified, so its budget has not been charged yet.
	pending bool
	// verified: the node's answer said it verified the key (wire.KeyVerified).
	verified bool
}

// settleKey runs once a request with an API key is answered. A key the node verified is remembered
// (its later requests are charged to it up front), and if its budget was not charged up front it is
// now: a refusal there is remembered by the limiter and refuses the key's next requests. A key a node
// refused (401) is forgotten: it may just have been revoked.
func (g *Gateway) settleKey(r *http.Request, x *exchange) {
	switch {
	case x.key.verified:
		if x.key.pending {
			g.keys.Add(x.key.sum, time.Now().Add(g.cfg.VerifiedKeyTTL).UnixNano())
			if g.cfg.PrincipalLimit != (ratelimit.Limit{}) {
				g.deps.Limiter.Allow(context.WithoutCancel(r.Context()), "edge:key:"+x.user, g.cfg.PrincipalLimit)
			}
		}
	case x.status == http.StatusUnauthorized:
		g.keys.Remove(x.key.sum)
	}
}

// bodyChunk is the first buffer a body is read into (a Content-Length under it gets exactly its
// size); the buffer doubles as bytes arrive, so a client holds only as much memory as it has sent.
const bodyChunk = 16 << 10

// readBody reads the whole request body (at most MaxBody): a request that may be retried or replayed
// must be sendable twice, and the auth endpoints route by their body. The read must end within
// BodyTimeout (408 after), the buffer grows with what arrives (a Content-Length is never allocated up
// front), and every byte of it is reserved from the bytes all requests may hold at once (503 above).
// held is what the caller releases once the body is no longer needed.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, x *exchange) (body []byte, held int64, ok bool) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, 0, true
	}
	if r.ContentLength > g.cfg.MaxBody {
		g.fail(w, x, apierror.TooLarge(g.cfg.MaxBody))
		return nil, 0, false
	}
	if g.cfg.BodyTimeout > 0 {
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(g.cfg.BodyTimeout)) == nil {
			// Cleared once the body is in: the server's background read that notices a client leaving
			// must not time out while the node works.
			defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
		}
	}
	// limit is the most the buffer may need: the Content-Length, or one byte past MaxBody.
	limit := g.cfg.MaxBody + 1
	if r.ContentLength > 0 {
		limit = r.ContentLength
	}
	size := min(limit, bodyChunk)
	if !g.reserve(size) {
		g.fail(w, x, errBuffersFull)
		return nil, 0, false
	}
	held = size
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == limit {
				break // Content-Length bytes are in, or more than MaxBody came
			}
			grow := min(int64(cap(buf)), limit-int64(cap(buf)))
			if !g.reserve(grow) {
				g.release(held)
				g.fail(w, x, errBuffersFull)
				return nil, 0, false
			}
			held += grow
			next := make([]byte, len(buf), int64(cap(buf))+grow)
			copy(next, buf)
			buf = next
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			g.release(held)
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				// First: the failed read also cancels the request's context. The rest of the body may still
				// come, so the connection cannot be read again.
				w.Header().Set("Connection", "close")
				g.fail(w, x, apierror.RequestTimeout().WithCause(err))
			case r.Context().Err() != nil:
				g.fail(w, x, apierror.ClientClosed().WithCause(err))
			default:
				g.fail(w, x, apierror.BadRequest("the request body could not be read").WithCause(err))
			}
			return nil, 0, false
		}
	}
	if int64(len(buf)) > g.cfg.MaxBody {
		g.release(held)
		g.fail(w, x, apierror.TooLarge(g.cfg.MaxBody))
		return nil, 0, false
	}
	return buf, held, true
}

// errBuffersFull is the answer when the bodies being read already hold MaxBuffered bytes.
var errBuffersFull = apierror.Unavailable("the router is holding too many request bodies; retry shortly", time.Second)

// reserve takes n bytes from what request bodies may hold at once, if they are free. A counter rather
// than a semaphore: nothing ever waits for bytes (a request that finds none is refused at once), so
// an atomic add is the whole mechanism, with no lock on the request path.
func (g *Gateway) reserve(n int64) bool {
	if g.buffered.Add(n) > g.cfg.MaxBuffered {
		g.buffered.Add(-n)
		return false
	}
	return true
}

// release gives back bytes taken by reserve.
func (g *Gateway) release(n int64) {
	if n > 0 {
		g.buffered.Add(-n)
	}
}

// Buffered is the number of bytes request bodies hold now (read or being read).
func (g *Gateway) Buffered() int64 { return g.buffered.Load() }

// fail answers with one of the router's own errors.
func (g *Gateway) fail(w http.ResponseWriter, x *exchange, err error) {
	h := w.Header()
	h[wire.Region] = []string{g.cfg.Region}
	e := apierror.Public(err)
	if e.Status != apierror.StatusClientClosedRequest {
		// Nobody listens for a 499: its status is for the access log only.
		apierror.Write(w, e, x.rid)
		_ = http.NewResponseController(w).Flush() // before the access log, as in respond
	}
	x.status, x.code, x.cause = e.Status, e.Code, e.Cause
	if x.cause == nil && e.Status >= 500 {
		x.cause = err
	}
}

// finish records the request's metrics and hands its access-log line to the log writer.
func (g *Gateway) finish(r *http.Request, x *exchange) {
	d := time.Since(x.start)
	region := x.region
	if region == "" {
		region = "edge"
	}
	g.m.Observe(x.route, methodLabel(r.Method), x.status, region, d)
	if x.by != "" {
		g.m.Resolved(string(x.by))
	}
	line := accessLine{exchange: *x, method: r.Method, path: r.URL.Path, d: d}
	if g.logging.Load() {
		select {
		case g.logq <- line:
			return
		default:
			// The writer is behind: write this one here rather than lose it or wait.
		}
	}
	g.writeAccessLine(&line)
}

// accessLine is what an access-log line says.
type accessLine struct {
	exchange
	method, path string
	d            time.Duration
}

// RunAccessLog writes access-log lines queued by requests, until ctx is done; then it writes what is
// left in the queue and returns. Formatting a JSON line is a third of the router's own work per request:
// done here, on a goroutine of its own, it never delays the next request of a keep-alive connection.
// Without RunAccessLog, requests write their lines themselves. Stop it only once no request is being
// served (Router.Serve shuts the server down first), or the last lines may stay queued.
func (g *Gateway) RunAccessLog(ctx context.Context) error {
	g.logging.Store(true)
	defer g.logging.Store(false)
	for {
		select {
		case line := <-g.logq:
			g.writeAccessLine(&line)
		case <-ctx.Done():
			for {
				select {
				case line := <-g.logq:
					g.writeAccessLine(&line)
				default:
					return nil
				}
			}
		}
	}
}

func (g *Gateway) writeAccessLine(x *accessLine) {
	level := slog.LevelInfo
	if x.status >= 500 && x.status != apierror.StatusClientClosedRequest {
		level = slog.LevelWarn
	}
	if w := g.deps.AccessLog; w != nil {
		e := accesslog.Entry{
			Time: x.start, Level: level.String(), RequestID: x.rid, Method: x.method, Path: x.path, Route: x.route,
			Status: x.status, Bytes: x.bytes, DurationUS: x.d.Microseconds(), ClientIP: x.client, Region: x.region,
			Node: x.node, Attempts: x.attempts, ResolvedBy: string(x.by), TraceID: x.trace.TraceIDString(),
			Principal: x.user, ReplayedFrom: x.replayed, Code: x.code,
		}
		if x.cause != nil {
			e.Err = x.cause.Error()
		}
		if err := w.Write(&e); err != nil {
			g.log.Error("writing the access log failed", "err", err)
		}
		return
	}
	attrs := [...]slog.Attr{
		slog.String("request_id", x.rid),
		slog.String("method", x.method),
		slog.String("path", x.path),
		slog.String("route", x.route),
		slog.Int("status", x.status),
		slog.Int64("bytes", x.bytes),
		// An integer: slog formats floats through encoding/json, which costs more than the rest.
		slog.Int64("duration_us", x.d.Microseconds()),
		slog.String("client_ip", x.client),
		slog.String("region", x.region),
		slog.String("node", x.node),
		slog.Int("attempts", x.attempts),
		slog.String("resolved_by", string(x.by)),
		slog.String("trace_id", x.trace.TraceIDString()),
	}
	n := len(attrs)
	extra := make([]slog.Attr, 0, 4)
	if x.user != "" {
		extra = append(extra, slog.String("principal", x.user))
	}
	if x.replayed != "" {
		extra = append(extra, slog.String("replayed_from", x.replayed))
	}
	if x.code != "" {
		extra = append(extra, slog.String("code", x.code))
	}
	if x.cause != nil {
		extra = append(extra, slog.String("err", x.cause.Error()))
	}
	g.log.LogAttrs(context.Background(), level, "request", append(attrs[:n:n], extra...)...)
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// idempotent methods may be sent again to another node after a failure that may have reached the node.
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// outbound builds the request to a node from the client's (already cleaned) request. The Request is a
// shallow copy, so it keeps r's context: a client that leaves cancels the upstream call.
func outbound(r *http.Request, scheme string, node *upstream.Node, h http.Header, body []byte) *http.Request {
	out := new(http.Request)
	*out = *r
	out.URL = &url.URL{Scheme: scheme, Host: node.Addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.Host = ""
	out.RequestURI = ""
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.Header = h
	out.Close = false
	out.TransferEncoding = nil
	out.Trailer = nil
	out.Form, out.PostForm, out.MultipartForm = nil, nil, nil
	out.TLS = nil
	if body == nil {
		out.Body, out.ContentLength, out.GetBody = nil, 0, nil
	} else {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		// The transport may resend on a connection that died before the request went out.
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return out
}

// drain reads a little of a response that is thrown away, so its connection can be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}
