package router_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/router/routertest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// client is shared by the tests: keep-alive, no redirects, a timeout that only a hang reaches.
var client = &http.Client{
	Timeout: 20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// call is one request through a router.
type call struct {
	method, path, token, auth string
	body                      string
	header                    http.Header
}

// answer is a response, read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) echo(t *testing.T) routertest.Seen {
	t.Helper()
	var s routertest.Seen
	if err := json.Unmarshal(a.body, &s); err != nil || s.Node == "" {
		t.Fatalf("not an echo from a node (status %d): %s", a.status, a.body)
	}
	return s
}

func (a answer) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not a contract error (status %d): %s", a.status, a.body)
	}
	if e.Error.RequestID == "" || e.Error.RequestID != a.header.Get("X-Request-ID") {
		t.Errorf("error request_id %q does not match X-Request-ID %q", e.Error.RequestID, a.header.Get("X-Request-ID"))
	}
	return e.Error.Code
}

func do(t *testing.T, r *routertest.Router, c call) answer {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(method, r.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vv := range c.header {
		req.Header[k] = vv
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	case c.auth != "":
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// mustEcho asserts a 200 echo from a node of wantRegion and returns it.
func mustEcho(t *testing.T, a answer, wantRegion string) routertest.Seen {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", a.status, a.body)
	}
	s := a.echo(t)
	if s.Region != wantRegion {
		t.Fatalf("served by %s (node %s), want %s", s.Region, s.Node, wantRegion)
	}
	if got := a.header.Get("X-Meridian-Region"); got != wantRegion {
		t.Errorf("X-Meridian-Region %q, want the serving region %q", got, wantRegion)
	}
	return s
}

// opsGet is a GET of one of the router's own endpoints (/healthz, /readyz, /metrics).
func opsGet(t *testing.T, r *routertest.Router, path string) answer {
	t.Helper()
	ops := *r
	ops.URL = r.OpsURL
	return do(t, &ops, call{path: path})
}
