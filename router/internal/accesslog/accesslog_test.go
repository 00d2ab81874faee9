package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestLineMatchesSlog(t *testing.T) {
	at := time.Date(2026, 11, 26, 9, 0, 0, 123456789, time.UTC)
	e := Entry{Time: at, Level: "INFO", RequestID: "rid", Method: "GET", Path: "/api/v1/users/me", Route: "/users/me",
		Status: 200, Bytes: 180, DurationUS: 95, ClientIP: "127.0.0.1", Region: "eu-west", Node: "n1", Attempts: 1,
		ResolvedBy: "token", TraceID: "t", Principal: "usr_x"}
	var ours bytes.Buffer
	if err := New(&ours, "component", "router").Write(&e); err != nil {
		t.Fatal(err)
	}
	var theirs bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&theirs, nil)).With("component", "router")
	r := slog.NewRecord(at, slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("request_id", "rid"), slog.String("method", "GET"), slog.String("path", "/api/v1/users/me"),
		slog.String("route", "/users/me"), slog.Int("status", 200), slog.Int64("bytes", 180), slog.Int64("duration_us", 95),
		slog.String("client_ip", "127.0.0.1"), slog.String("region", "eu-west"), slog.String("node", "n1"), slog.Int("attempts", 1),
		slog.String("resolved_by", "token"), slog.String("trace_id", "t"), slog.String("principal", "usr_x"))
	if err := l.Handler().Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if ours.String() != theirs.String() {
		t.Errorf("ours:   %s\ntheirs: %s", ours.String(), theirs.String())
	}
}

func TestEscaping(t *testing.T) {
	for _, s := range []string{"plain", `quo"te`, `back\slash`, "new\nline\r\t", "\x00\x1f\x7f", "caf\u00e9", "\xff\xfe bad", "line\u2028sep\u2029", "<&>"} {
		got := appendString(nil, s)
		// encoding/json replaces each invalid byte with U+FFFD, as we do.
		want, _ := json.Marshal(s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: invalid JSON %s", s, got)
		}
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: decodes to %q, want %q", s, back, wantBack)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("/api/v1/users/me")
	f.Add("\xff\u2028\"\\\n")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q: invalid JSON %s", s, b)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Fatalf("%q decodes to %q", s, back)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	l := New(io.Discard, "component", "router", "router_region", "us-east")
	e := Entry{Time: time.Now(), Level: "INFO", RequestID: "0123456789abcdef01234567", Method: "GET", Path: "/api/v1/users/me",
		Route: "/users/me", Status: 200, Bytes: 180, DurationUS: 95, ClientIP: "127.0.0.1", Region: "eu-west",
		Node: "meridian/rt-123-eu-west-1", Attempts: 1, ResolvedBy: "token", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		Principal: "usr_065wzsb800g370x3nmh42kr104106105"}
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Write(&e)
	}
}
