package requestid

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/internal/wire"
)

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if len(id) != 24 || seen[id] || !Valid(id) {
			t.Fatalf("bad or repeated request ID %q", id)
		}
		seen[id] = true
	}
}

func TestValid(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-DEF_0.9":           true,
		strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false,
		"":                      false,
		"has space":             false,
		"new\nline":             false,
		"ünïcode":               false,
	} {
		if got := Valid(id); got != want {
			t.Errorf("Valid(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestMiddleware(t *testing.T) {
	var seen string
	h := func(trust bool) http.Handler {
		return Middleware(trust)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = From(r.Context()) }))
	}
	for _, c := range []struct {
		name     string
		trust    bool
		incoming string
		keep     bool
	}{
		{"trusted and well-formed", true, "router-id-1", true},
		{"trusted but malformed", true, "bad id", false},
		{"not trusted", false, "router-id-1", false},
		{"none", true, "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.incoming != "" {
			r.Header.Set(wire.RequestID, c.incoming)
		}
		w := httptest.NewRecorder()
		h(c.trust).ServeHTTP(w, r)
		got := w.Header().Get(wire.RequestID)
		if got != seen || !Valid(got) {
			t.Errorf("%s: echoed %q, context %q", c.name, got, seen)
		}
		if (got == c.incoming) != c.keep {
			t.Errorf("%s: got %q for incoming %q, keep=%v", c.name, got, c.incoming, c.keep)
		}
	}
}
