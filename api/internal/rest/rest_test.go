package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/requestid"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

type body struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Tags  []string `json:"tags"`
	Inner struct {
		On bool `json:"on"`
	} `json:"inner"`
}

func (b *body) Validate() map[string]string {
	if b.Name == "" {
		return map[string]string{"name": "is required"}
	}
	return nil
}

func decode(ct, payload string) error {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(payload))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	var b body
	return Decode(httptest.NewRecorder(), r, &b)
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name, ct, payload string
		status            int
		field             string
	}{
		{"valid", "application/json", `{"name":"a","count":1,"tags":["x"],"inner":{"on":true}}`, 0, ""},
		{"charset", "application/json; charset=utf-8", `{"name":"a"}`, 0, ""},
		{"wrong type", "text/plain", `{"name":"a"}`, 415, ""},
		{"no type with a body", "", `{"name":"a"}`, 415, ""},
		{"unknown field", "application/json", `{"name":"a","admin":true}`, 400, "admin"},
		{"wrong field type", "application/json", `{"name":"a","count":"many"}`, 400, "count"},
		{"nested type", "application/json", `{"name":"a","inner":{"on":"yes"}}`, 400, "inner.on"},
		{"validation", "application/json", `{"count":1}`, 400, "name"},
		{"trailing data", "application/json", `{"name":"a"}{"name":"b"}`, 400, ""},
		{"truncated", "application/json", `{"name":"a"`, 400, ""},
		{"syntax", "application/json", `{"name":}`, 400, ""},
		{"empty", "application/json", ``, 400, ""},
		{"not an object", "application/json", `[1,2]`, 400, ""},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, ""},
	}
	for _, c := range cases {
		err := decode(c.ct, c.payload)
		if c.status == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		e := apierror.Public(err)
		if e.Status != c.status {
			t.Errorf("%s: status %d (%v), want %d", c.name, e.Status, err, c.status)
		}
		if c.field != "" {
			if _, ok := e.Fields[c.field]; !ok {
				t.Errorf("%s: fields %v lack %q", c.name, e.Fields, c.field)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"tags":[1]}`, `{"inner":{"on":null}}`, `{`, `null`, `"x"`, `{"name":"\u0000"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		err := decode("application/json", payload)
		if err == nil {
			return
		}
		e := apierror.Public(err)
		if e.Status != 400 && e.Status != 413 {
			t.Fatalf("payload %q: status %d (%v), want 400 or 413", payload, e.Status, err)
		}
	})
}

func TestWriteError(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{apierror.Invalid(map[string]string{"email": "must be a valid address"}), 400, "invalid_request"},
		{apierror.NotFound("job"), 404, "not_found"},
		{apierror.RateLimited(1500 * time.Millisecond), 429, "rate_limited"},
		{fmt.Errorf("wrapped: %w", apierror.Conflict("email_taken", "taken")), 409, "email_taken"},
		{context.Canceled, 499, "client_closed_request"},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), 504, "timeout"},
		{errors.New("pq: password authentication failed for user secret"), 500, "internal"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil).WithContext(requestid.With(context.Background(), "rid-1"))
		w := httptest.NewRecorder()
		WriteError(w, r, c.err)
		var got struct {
			Error struct {
				Code      string            `json:"code"`
				Message   string            `json:"message"`
				RequestID string            `json:"request_id"`
				Fields    map[string]string `json:"fields"`
			} `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.status || got.Error.Code != c.code || got.Error.RequestID != "rid-1" {
			t.Errorf("%v: %d %+v", c.err, w.Code, got)
		}
		if strings.Contains(w.Body.String(), "secret") {
			t.Errorf("the private cause leaked: %s", w.Body.String())
		}
		if c.status == 429 && w.Header().Get("Retry-After") != "2" {
			t.Errorf("Retry-After = %q, want 2 (rounded up)", w.Header().Get("Retry-After"))
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("content type %q", ct)
		}
	}
}

func TestLimitAndCursor(t *testing.T) {
	for q, want := range map[string]int{"": 20, "limit=1": 1, "limit=100": 100} {
		n, err := Limit(httptest.NewRequest("GET", "/?"+q, nil))
		if err != nil || n != want {
			t.Errorf("%q: %d %v", q, n, err)
		}
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "limit=-1"} {
		if _, err := Limit(httptest.NewRequest("GET", "/?"+q, nil)); apierror.Public(err).Status != 400 {
			t.Errorf("%q accepted", q)
		}
	}
	type cur struct {
		After string `json:"after"`
	}
	c := EncodeCursor(cur{After: "job_x"})
	var back cur
	if err := DecodeCursor(c, &back); err != nil || back.After != "job_x" {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range []string{"!!", EncodeCursor(map[string]int{"other": 1}), strings.Repeat("a", 5000)} {
		if err := DecodeCursor(bad, &back); apierror.Public(err).Status != 400 {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

// The shard manager's routing errors become the contract's answers here, and nowhere else.
func TestWriteErrorRouting(t *testing.T) {
	wrong := fmt.Errorf("jobs: %w", &shardpool.WrongRegionError{Region: "eu-west", Want: "us-east"})
	cases := []struct {
		err           error
		status        int
		code          string
		retry, replay string
	}{
		{wrong, 421, "wrong_region", "", "eu-west"},
		{fmt.Errorf("%w: keyrange 20-2080", shardpool.ErrFrozen), 503, "unavailable", "1", ""},
		{shardpool.ErrNoTopology, 503, "unavailable", "1", ""},
		{topology.ErrNoShard, 404, "not_found", "", ""},
		// A handler that knows what the ksid named answers in its own words.
		{apierror.NotFound("user").WithCause(topology.ErrNoShard), 404, "not_found", "", ""},
		{fmt.Errorf("shardpool: write held: %w", context.Canceled), 499, "client_closed_request", "", ""},
		// A shard that is down or going away is a 503 to retry, never a 500.
		{fmt.Errorf("jobs: create: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}), 503, "shard_unavailable", "2", ""},
		{fmt.Errorf("profiles: %w", puddle.ErrClosedPool), 503, "shard_unavailable", "2", ""},
		{fmt.Errorf("reviews: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), 503, "shard_unavailable", "2", ""},
		// A query that is wrong is still the server's fault.
		{fmt.Errorf("jobs: %w", &pgconn.PgError{Code: "42P01", Message: "relation does not exist"}), 500, "internal", "", ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		w := httptest.NewRecorder()
		WriteError(w, r, c.err)
		var got struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.status || got.Error.Code != c.code || w.Header().Get("Retry-After") != c.retry || w.Header().Get(wire.ReplayRegion) != c.replay {
			t.Errorf("%v: %d %+v %v", c.err, w.Code, got, w.Header())
		}
		if strings.Contains(got.Error.Message, "shardpool") || strings.Contains(got.Error.Message, "keyrange") || strings.Contains(got.Error.Message, "SQLSTATE") || strings.Contains(got.Error.Message, "administrator") {
			t.Errorf("%v: the private cause leaked: %q", c.err, got.Error.Message)
		}
	}
	if e := Public(apierror.NotFound("user").WithCause(topology.ErrNoShard)); e.Message != "user not found" {
		t.Errorf("the handler's own answer was replaced: %q", e.Message)
	}
	if e := Public(wrong); !errors.Is(e, shardpool.ErrWrongRegion) || e.Message != "the data is homed in region eu-west" {
		t.Errorf("wrong region: %v", e)
	}
}
