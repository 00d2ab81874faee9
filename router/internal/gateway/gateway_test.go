package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"

	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/router/internal/accesslog"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Access-log lines queued for the writer goroutine are all written by the time it returns, and each
// is a JSON object with the request's fields.
func TestAccessLogIsDrained(t *testing.T) {
	g, tok := testGateway(t, canned{}, nil)
	var out lockedBuffer
	g.deps.AccessLog = accesslog.New(&out)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.RunAccessLog(ctx) }()
	for !g.logging.Load() {
		runtime.Gosched() // RunAccessLog has not started yet
	}
	next := requests(tok)
	const n = 200
	for range n {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, next())
		if rec.Code != http.StatusOK || rec.Header().Get("X-Meridian-Region") != "eu-west" {
			t.Fatalf("status %d, headers %v", rec.Code, rec.Header())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out.b.Bytes()))
	lines := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %s", sc.Bytes())
		}
		if m["msg"] != "request" || m["status"] != float64(200) || m["region"] != "eu-west" || m["resolved_by"] != "token" || m["route"] != "/users/me" {
			t.Fatalf("line %v", m)
		}
		lines++
	}
	if lines != n {
		t.Fatalf("%d lines for %d requests", lines, n)
	}
}

func TestFailWritesNothingForAClientThatLeft(t *testing.T) {
	g := &Gateway{}
	rec := httptest.NewRecorder()
	x := &exchange{rid: "rid"}
	g.fail(rec, x, context.Canceled)
	if x.status != apierror.StatusClientClosedRequest || rec.Body.Len() != 0 {
		t.Errorf("a cancelled request wrote %d %q", x.status, rec.Body)
	}
}
