package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/breaker"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/router/internal/headers"
	"github.com/8thdegree/meridian/router/internal/upstream"
)

// attemptResult is one attempt's answer.
type attemptResult struct {
	resp    *http.Response
	err     error
	timeout bool
}

// forward sends the request to a node of region, retrying on other nodes of the same region when that
// is safe, and replaying once in the region a node names.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, x *exchange, region string, body []byte) {
	h := r.Header
	var triedBuf [8]*upstream.Node
	tried := triedBuf[:0]
	attempts := 0
	var last attemptResult // the last failed attempt, for the answer when nothing better comes
	for {
		x.region = region
		pool := g.deps.Pools.Pool(region)
		if pool == nil {
			g.fail(w, x, apierror.BadGateway().WithCause(errors.New("region "+region+" is not in the topology")))
			return
		}
		node, err := pool.Pick(tried)
		if err != nil {
			var down *upstream.DownError
			switch {
			case errors.As(err, &down):
				g.m.RegionDown(region)
				g.fail(w, x, apierror.RegionUnavailable(region, down.RetryAfter).WithCause(errors.Join(err, last.err)))
			case errors.Is(err, upstream.ErrUnknown):
				g.fail(w, x, apierror.Unavailable("the router does not know the region's nodes yet; retry shortly", time.Second).WithCause(err))
			default:
				g.fail(w, x, apierror.BadGateway().WithCause(err))
			}
			return
		}
		// Every node picked is skipped from then on (a retry, or a circuit that refused), so the loop
		// ends once each node of the region has been tried or refused.
		tried = append(tried, node)
		x.node = node.ID
		release := node.Acquire()
		res, outcome, err := upstream.Call(r.Context(), node, func(ctx context.Context) (attemptResult, upstream.Outcome, error) {
			return g.attempt(r, node, h, body)
		})
		if errors.Is(err, breaker.ErrOpen) {
			// The circuit opened between the pick and the call: another node, not an attempt.
			release()
			g.m.Attempt(region, "breaker_open")
			continue
		}
		attempts++
		x.attempts++
		g.m.Attempt(region, outcomeLabel(outcome, res))

		switch outcome {
		case upstream.Canceled:
			release()
			if res.resp != nil {
				_ = res.resp.Body.Close()
			}
			g.fail(w, x, apierror.ClientClosed().WithCause(r.Context().Err()))
			return
		case upstream.DialFailure:
			// Nothing reached the node: any request may go to another.
			release()
			last = res
			if attempts < g.cfg.MaxAttempts {
				continue
			}
			g.fail(w, x, apierror.BadGateway().WithCause(res.err))
			return
		case upstream.ConnFailure:
			release()
			last = res
			if idempotent(r.Method) && attempts < g.cfg.MaxAttempts {
				continue
			}
			g.fail(w, x, apierror.BadGateway().WithCause(res.err))
			return
		case upstream.Failure:
			if res.resp == nil { // no answer in time
				release()
				g.fail(w, x, apierror.GatewayTimeout().WithCause(res.err))
				return
			}
			if res.resp.StatusCode != http.StatusGatewayTimeout && idempotent(r.Method) && attempts < g.cfg.MaxAttempts {
				drain(res.resp)
				release()
				last = attemptResult{err: errors.New("node " + node.ID + " answered " + res.resp.Status)}
				continue
			}
			// Out of attempts (or not safe to retry): the node's own answer is the honest one.
		}

		resp := res.resp
		if resp.StatusCode == http.StatusMisdirectedRequest {
			if hint := resp.Header.Get(wire.ReplayRegion); hint != "" {
				drain(resp)
				release()
				if x.replayed != "" || hint == region {
					// A second hint, or one naming the region that sent it: the nodes disagree on where the
					// data lives, which happens only while a move is being cut over. Never a second replay.
					g.log.Warn("replay hint not followed", "request_id", x.rid, "region", region, "hint", hint, "replayed_from", x.replayed)
					g.fail(w, x, apierror.Unavailable("the data is being moved between regions; retry shortly", time.Second))
					return
				}
				if g.deps.Pools.Pool(hint) == nil {
					g.fail(w, x, apierror.BadGateway().WithCause(errors.New("replay hint names unknown region "+hint)))
					return
				}
				g.m.Replay(region, hint)
				x.replayed, region = region, hint
				// A fresh header map: the transport may still hold the first one for a moment.
				h = h.Clone()
				h[wire.Replayed] = []string{x.replayed}
				tried, attempts = triedBuf[:0], 0
				continue
			}
		}
		g.respond(w, r, x, resp, region)
		release()
		return
	}
}

// attempt sends one request to node and classifies what happened.
func (g *Gateway) attempt(r *http.Request, node *upstream.Node, h http.Header, body []byte) (attemptResult, upstream.Outcome, error) {
	resp, err := g.deps.Transports(node.Region).RoundTrip(outbound(r, g.scheme(), node, h, body)) //nolint:bodyclose // the caller closes it: respond, or the retry loop
	if err != nil {
		res := attemptResult{err: err}
		var ne net.Error
		var op *net.OpError
		switch {
		case r.Context().Err() != nil:
			return res, upstream.Canceled, err
		case errors.As(err, &op) && op.Op == "dial":
			if op.Timeout() {
				res.timeout = true
			}
			return res, upstream.DialFailure, err
		case errors.As(err, &ne) && ne.Timeout():
			res.timeout = true
			return res, upstream.Failure, err
		}
		return res, upstream.ConnFailure, err
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return attemptResult{resp: resp}, upstream.Failure, nil
	}
	return attemptResult{resp: resp}, upstream.Success, nil
}

func outcomeLabel(o upstream.Outcome, res attemptResult) string {
	switch o {
	case upstream.Success:
		return "ok"
	case upstream.ConnFailure:
		return "conn_failure"
	case upstream.DialFailure:
		return "dial_failure"
	case upstream.Canceled:
		return "canceled"
	}
	if res.timeout {
		return "timeout"
	}
	return "failure"
}

// respond copies a node's answer to the client. The node's X-Meridian-Region passes through (it is the
// region that served); X-Request-ID is the router's.
func (g *Gateway) respond(w http.ResponseWriter, r *http.Request, x *exchange, resp *http.Response, region string) {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && x.bearer != "" && resp.Header.Get(wire.TokenRevoked) != "" {
		// The node refused the token because its session ended: refuse it here from now on.
		g.deps.Verifier.Revoke(x.bearer)
	}
	if x.key.sent {
		if v := resp.Header[wire.KeyVerified]; len(v) == 1 && v[0] == x.user {
			x.key.verified = true
		}
	}
	dst := w.Header()
	headers.CopyResponse(dst, resp.Header)
	dst[wire.RequestID] = []string{x.rid}
	if _, ok := dst[wire.Region]; !ok {
		dst[wire.Region] = []string{region}
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		dst["Trailer"] = names
	}
	x.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	var n int64
	var err error
	if resp.ContentLength < 0 {
		n, err = copyFlushing(w, resp.Body)
	} else {
		// Through the response's buffer, not the server's ReadFrom (which writes the headers out at
		// once and then tries splice and sendfile on a source that is neither): the answer leaves in
		// one write, at the Flush below.
		buf := copyBufs.Get().(*[]byte)
		n, err = io.CopyBuffer(writerOnly{w}, resp.Body, *buf)
		copyBufs.Put(buf)
	}
	x.bytes = n
	if err != nil {
		if r.Context().Err() != nil {
			x.status, x.cause = apierror.StatusClientClosedRequest, err
			return
		}
		// The status is out; the only honest thing left is to break the response so the client sees
		// it incomplete. Log first: the panic ends the handler.
		x.cause = err
		g.finish(r, x)
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
	if resp.ContentLength >= 0 && len(resp.Trailer) == 0 {
		// The answer is complete: send it now. The server would only flush it when the handler returns,
		// after the access log and the metrics, which the client has no reason to wait for.
		_ = http.NewResponseController(w).Flush()
	}
}

// copyBufs holds the buffers bodies are copied with.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writerOnly hides the ResponseWriter's ReadFrom from io.CopyBuffer.
type writerOnly struct{ io.Writer }

// copyFlushing copies a body of unknown length, flushing after each read so that a streamed answer
// reaches the client as it is produced.
func copyFlushing(w http.ResponseWriter, src io.Reader) (int64, error) {
	rc := http.NewResponseController(w)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, werr
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
