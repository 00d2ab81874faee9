package openapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/feature"
)

// CheckRoutes fails t unless doc and routes agree: every route that is not Internal is in doc, under
// its /api/v1 path and method with its Name as operationId, and every operation in doc is such a route.
// Give it the node's full route set and the document it serves.
func CheckRoutes(t testing.TB, doc []byte, routes []feature.Route) {
	t.Helper()
	var d struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatalf("openapi: the document is not an OpenAPI object: %v", err)
		return
	}
	if !strings.HasPrefix(d.OpenAPI, "3.1.") {
		t.Errorf("openapi: version %q, want 3.1.x", d.OpenAPI)
	}
	want := map[string]string{} // "METHOD /path" → operationId
	for _, rt := range routes {
		if rt.Access == feature.Internal {
			continue
		}
		want[strings.ToUpper(rt.Method)+" "+Path(rt.Path)] = rt.Name
	}
	got := map[string]string{}
	for path, item := range d.Paths {
		for method, op := range item {
			if !methods[method] {
				continue // parameters, summary, servers...
			}
			id, _ := op["operationId"].(string)
			got[strings.ToUpper(method)+" "+path] = id
		}
	}
	for _, k := range sortedKeys(want) {
		id, ok := got[k]
		switch {
		case !ok:
			t.Errorf("openapi: route %s (%s) is not in the document", want[k], k)
		case id != want[k]:
			t.Errorf("openapi: %s has operationId %q, want the route name %q", k, id, want[k])
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			t.Errorf("openapi: the document has %s (%s), which no route serves", k, got[k])
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
