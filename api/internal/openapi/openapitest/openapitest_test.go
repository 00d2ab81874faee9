package openapitest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/openapi"
)

type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...) }

func TestCheck(t *testing.T) {
	spec := openapi.NewSpec()
	routes := []feature.Route{
		spec.Route(),
		{Name: "getThing", Method: http.MethodGet, Path: "/things/{id}", Access: feature.Authenticated, Scope: "things:read",
			Handler: func(http.ResponseWriter, *http.Request) error { return nil },
			Doc: map[string]any{"summary": "A thing", "responses": map[string]any{"200": map[string]any{"description": "The thing.",
				"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": []string{"object", "null"}}}}}}}},
	}
	doc, err := openapi.Build(openapi.Info{Title: "T", Version: "1"}, routes, nil)
	if err != nil {
		t.Fatal(err)
	}
	Check(t, doc, routes)

	for name, c := range map[string]struct {
		doc  string
		want string
	}{
		"bad schema type":  {strings.Replace(string(doc), `"type": "integer"`, `"type": "integr"`, 1), "integr"},
		"unknown field":    {strings.Replace(string(doc), `"openapi": "3.1.0"`, `"openapi": "3.1.0", "bogus": 1`, 1), "bogus"},
		"an OpenAPI 3.0":   {strings.Replace(string(doc), `"openapi": "3.1.0"`, `"openapi": "3.0.3"`, 1), "not 3.1"},
		"not even a JSON":  {"{", "cannot load"},
		"path param wrong": {strings.Replace(string(doc), `"in": "path"`, `"in": "pth"`, 1), "path parameters"},
	} {
		rec := &recorder{TB: t}
		Validate(rec, []byte(c.doc))
		if len(rec.errs) == 0 || !strings.Contains(strings.Join(rec.errs, "\n"), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, rec.errs, c.want)
		}
	}
}
