package router_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/router"
	"github.com/8thdegree/meridian/router/routertest"
)

// slowBody opens a connection to r and sends the headers of a POST whose Content-Length is length,
// then the first sent bytes of its body, and nothing more: a client that trickles its body, or stalls.
func slowBody(t *testing.T, r *routertest.Router, token string, length, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	head := fmt.Sprintf("POST /api/v1/jobs HTTP/1.1\r\nHost: meridian.test\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", token, length)
	if _, err := io.WriteString(conn, head+strings.Repeat("a", sent)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// buffered is the router's meridian_router_buffered_body_bytes.
func buffered(t *testing.T, r *routertest.Router) int64 {
	t.Helper()
	a := opsGet(t, r, "/metrics")
	for _, line := range strings.Split(string(a.body), "\n") {
		if v, ok := strings.CutPrefix(line, "meridian_router_buffered_body_bytes "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("buffered bytes %q: %v", v, err)
			}
			return int64(n)
		}
	}
	t.Fatalf("no meridian_router_buffered_body_bytes in /metrics:\n%s", a.body)
	return 0
}

// A Content-Length is a promise, not a reason to allocate: a client that announces 1 MiB and sends one
// byte holds one small buffer, not 1 MiB, and gives it back when it leaves.
func TestBodyBuffersGrowWithWhatArrives(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	u := env.User(t, "us-east")

	conns := make([]net.Conn, 4)
	for i := range conns {
		conns[i] = slowBody(t, r, u.Token, 1<<20, 1)
	}
	waitFor(t, "the stalled bodies to be reserved", func() bool { return buffered(t, r) > 0 })
	// Give the router every chance to allocate more than it was sent, then look again.
	waitFor(t, "all four stalled bodies to be read", func() bool { return buffered(t, r) >= 4*16<<10 })
	if got := buffered(t, r); got > 4*64<<10 {
		t.Fatalf("4 clients that sent 1 byte each hold %d bytes of buffers, want a small buffer each (<= 64 KiB)", got)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	waitFor(t, "the buffers to be released", func() bool { return buffered(t, r) == 0 })
	if n := env.TotalHits("us-east"); n != 0 {
		t.Errorf("%d incomplete requests reached a node", n)
	}
}

// A body that does not arrive within BodyReadTimeout is answered 408 and its connection closed: a
// stalled client holds neither a buffer nor a connection for long.
func TestSlowBodyTimesOut(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", func(c *router.Config) { c.BodyReadTimeout = 300 * time.Millisecond })
	u := env.User(t, "us-east")

	conn := slowBody(t, r, u.Token, 1<<20, 1)
	// A guard against a hang only: the router answers long before.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header, body: b}
	if a.status != http.StatusRequestTimeout || a.errorCode(t) != "request_timeout" {
		t.Fatalf("got %d %s, want 408 request_timeout", a.status, a.body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection is still open after the 408 (read: %v)", err)
	}
	waitFor(t, "the buffer to be released", func() bool { return buffered(t, r) == 0 })
	// A body that arrives in time is not affected, and a request kept waiting upstream longer than the
	// body timeout is not cut off either.
	slow := env.Nodes("us-east")[0]
	slow.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		time.Sleep(600 * time.Millisecond)
		slow.Echo().ServeHTTP(w, req)
	}))
	s := mustEcho(t, do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs", token: u.Token, body: `{"title":"t"}`}), "us-east")
	if s.Body != `{"title":"t"}` {
		t.Errorf("node got %q", s.Body)
	}
}

// The bodies held at once are capped across all requests: past MaxBufferedBytes a request is refused
// with 503 and Retry-After, before any node is asked, and served again once the bytes are free.
func TestBufferedBytesAreCapped(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", func(c *router.Config) {
		c.MaxBodyBytes = 32 << 10
		c.MaxBufferedBytes = 64 << 10
	})
	u := env.User(t, "us-east")

	// Each sends more than the first 16 KiB buffer, so each holds a 32 KiB one: together, the cap.
	first := slowBody(t, r, u.Token, 32<<10, 20<<10)
	waitFor(t, "the first body to hold 32 KiB", func() bool { return buffered(t, r) == 32<<10 })
	slowBody(t, r, u.Token, 32<<10, 20<<10)
	waitFor(t, "both bodies to hold 64 KiB", func() bool { return buffered(t, r) == 64<<10 })

	a := do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs", token: u.Token, body: `{"title":"t"}`})
	if a.status != http.StatusServiceUnavailable || a.errorCode(t) != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("over the cap: got %d %v %s, want 503 unavailable with Retry-After", a.status, a.header, a.body)
	}
	// A request without a body holds nothing and passes.
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "us-east")
	if n := env.TotalHits("us-east"); n != 1 {
		t.Errorf("%d requests reached the node, want only the one without a body", n)
	}

	_ = first.Close()
	waitFor(t, "the first body's bytes to be free", func() bool { return buffered(t, r) == 32<<10 })
	mustEcho(t, do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs", token: u.Token, body: `{"title":"t"}`}), "us-east")
}
