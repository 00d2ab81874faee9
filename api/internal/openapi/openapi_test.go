package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/server"
)

func noop(w http.ResponseWriter, r *http.Request) error {
	rest.WriteJSON(w, http.StatusOK, map[string]string{})
	return nil
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

// syntheticRoutes looks like a feature set: docs written the way feature packages write them.
func syntheticRoutes(spec *Spec) []feature.Route {
	json := func(s any) map[string]any { return map[string]any{"application/json": map[string]any{"schema": s}} }
	return []feature.Route{
		{Name: "login", Method: http.MethodPost, Path: "/auth/login", Access: feature.Public, Handler: noop, Doc: map[string]any{
			"summary":     "Log in",
			"requestBody": map[string]any{"required": true, "content": json(ref("LoginInput"))},
			"responses": map[string]any{
				"200": map[string]any{"description": "Tokens.", "content": json(ref("Tokens"))},
				"401": map[string]any{"description": "Bad credentials.", "content": json(ref("Error"))},
			},
		}},
		{Name: "listJobs", Method: http.MethodGet, Path: "/jobs/", Access: feature.Authenticated, Roles: []authn.Role{authn.Client, authn.Freelancer}, Scope: "jobs:read", Handler: noop, Doc: map[string]any{
			"summary": "List jobs",
			"parameters": []any{
				map[string]any{"name": "limit", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 100}},
			},
			"responses": map[string]any{"200": map[string]any{"description": "A page.", "content": json(ref("JobPage"))}},
		}},
		{Name: "createJob", Method: http.MethodPost, Path: "/jobs/", Access: feature.Authenticated, Roles: []authn.Role{authn.Client}, Handler: noop, Doc: map[string]any{
			"summary":     "Post a job",
			"requestBody": map[string]any{"required": true, "content": json(ref("Job"))},
			"responses":   map[string]any{"201": map[string]any{"description": "Created.", "content": json(ref("Job"))}, "409": ErrorResponse(409)},
		}},
		{Name: "getJob", Method: http.MethodGet, Path: "/jobs/{id}", Access: feature.Public, Handler: noop, Doc: map[string]any{
			"summary":    "Read a job",
			"parameters": []map[string]any{{"name": "id", "in": "path", "required": true, "description": "The job's ID.", "schema": map[string]any{"type": "string"}}},
			"responses":  map[string]any{"200": map[string]any{"description": "The job.", "content": json(ref("Job"))}},
		}},
		// No Doc parameters: the path parameter is derived, the pattern dropped.
		{Name: "deleteJob", Method: http.MethodDelete, Path: "/jobs/{id:job_[a-z0-9]{32}}", Access: feature.Authenticated, Handler: noop, Doc: map[string]any{
			"summary":   "Delete a job",
			"responses": map[string]any{"204": map[string]any{"description": "Deleted."}},
		}},
		{Name: "userReviews", Method: http.MethodGet, Path: "/users/{user_id}/reviews/{id}", Access: feature.Public, Handler: noop},
		{Name: "internalSearch", Method: http.MethodPost, Path: "/internal/jobs/search", Access: feature.Internal, Handler: noop, Doc: map[string]any{"summary": "node to node"}},
		spec.Route(),
	}
}

func syntheticSchemas() map[string]any {
	return map[string]any{
		"LoginInput": map[string]any{"type": "object", "additionalProperties": false, "required": []string{"email", "password"},
			"properties": map[string]any{"email": map[string]any{"type": "string", "format": "email"}, "password": map[string]any{"type": "string", "minLength": 10}}},
		"Tokens": map[string]any{"type": "object", "properties": map[string]any{"access_token": map[string]any{"type": "string"}}},
		"Job": map[string]any{"type": "object", "properties": map[string]any{
			"title":      map[string]any{"type": "string", "maxLength": 200},
			"budget_min": map[string]any{"type": []string{"number", "null"}, "minimum": 0},
		}},
		"JobPage": map[string]any{"type": "object", "properties": map[string]any{"items": map[string]any{"type": "array", "items": ref("Job")}}},
	}
}

var testInfo = Info{Title: "Meridian API", Version: "1.0.0", Description: "The 8thDegree marketplace API.", Servers: []string{"https://api.8thdegree.example"}}

func build(t *testing.T) ([]byte, []feature.Route) {
	t.Helper()
	routes := syntheticRoutes(NewSpec())
	doc, err := Build(testInfo, routes, syntheticSchemas())
	if err != nil {
		t.Fatal(err)
	}
	return doc, routes
}

// kin-openapi loads and validates the document as OpenAPI 3.1 (JSON Schema 2020-12 schemas included).
func TestBuildIsValidOpenAPI31(t *testing.T) {
	doc, _ := build(t)
	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData(doc)
	if err != nil {
		t.Fatalf("kin-openapi cannot load the document: %v", err)
	}
	if !d.IsOpenAPI31OrLater() {
		t.Fatalf("kin-openapi reads version %q as older than 3.1", d.OpenAPI)
	}
	if err := d.Validate(context.Background()); err != nil {
		t.Fatalf("invalid OpenAPI 3.1: %v\n%s", err, doc)
	}
	if len(d.Paths.Map()) != 5 {
		t.Errorf("%d paths, want 5: %v", len(d.Paths.Map()), d.Paths.InMatchingOrder())
	}
}

func TestBuildContents(t *testing.T) {
	doc, _ := build(t)
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		var cur any = d
		for _, p := range path {
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("%v: %s is not under an object", path, p)
			}
			cur = m[p]
		}
		return cur
	}
	has := func(v any, path ...string) {
		t.Helper()
		if v == nil {
			t.Errorf("missing %s", strings.Join(path, " → "))
		}
	}
	paths := get("paths").(map[string]any)
	for p := range paths {
		if !strings.HasPrefix(p, "/api/v1/") {
			t.Errorf("path %s is not canonical", p)
		}
		if strings.Contains(p, "internal") {
			t.Errorf("internal route %s is published", p)
		}
	}
	if !strings.Contains(get("info", "description").(string), "/api (") {
		t.Error("the description does not mention the /api alias")
	}
	if get("paths", "/api/v1/jobs/", "get", "operationId") != "listJobs" || get("paths", "/api/v1/jobs/", "post", "operationId") != "createJob" {
		t.Error("the operations of /jobs/ are not both there under their names")
	}
	// Derived path parameter of a patterned variable.
	params := get("paths", "/api/v1/jobs/{id}", "delete", "parameters").([]any)
	if len(params) != 1 || params[0].(map[string]any)["name"] != "id" || params[0].(map[string]any)["required"] != true {
		t.Errorf("deleteJob parameters %v", params)
	}
	// The Doc's own parameter is kept, not duplicated.
	if params := get("paths", "/api/v1/jobs/{id}", "get", "parameters").([]any); len(params) != 1 || params[0].(map[string]any)["description"] != "The job's ID." {
		t.Errorf("getJob parameters %v", params)
	}
	if params := get("paths", "/api/v1/users/{user_id}/reviews/{id}", "get", "parameters").([]any); len(params) != 2 {
		t.Errorf("two path parameters derived: %v", params)
	}
	// Security: public says none; authenticated takes a token or a key with the scope.
	if s := get("paths", "/api/v1/auth/login", "post", "security").([]any); len(s) != 0 {
		t.Errorf("public security %v", s)
	}
	sec, _ := json.Marshal(get("paths", "/api/v1/jobs/", "get", "security"))
	if string(sec) != `[{"bearerAuth":[]},{"apiKeyAuth":["jobs:read"]}]` {
		t.Errorf("authenticated security %s", sec)
	}
	has(get("components", "securitySchemes", "bearerAuth", "bearerFormat"), "bearerAuth")
	if get("components", "securitySchemes", "apiKeyAuth", "name") != "Authorization" {
		t.Error("the API key scheme is not the Authorization header")
	}
	if roles := get("paths", "/api/v1/jobs/", "get", "x-meridian-roles").([]any); len(roles) != 2 {
		t.Errorf("roles %v", roles)
	}
	// Standard error responses, referenced from components, and the ones the Doc wrote kept.
	for _, c := range []struct {
		path, method, status, want string
	}{
		{"/api/v1/auth/login", "post", "400", "#/components/responses/BadRequest"},
		{"/api/v1/auth/login", "post", "413", "#/components/responses/RequestTooLarge"},
		{"/api/v1/auth/login", "post", "415", "#/components/responses/UnsupportedMediaType"},
		{"/api/v1/auth/login", "post", "429", "#/components/responses/RateLimited"},
		{"/api/v1/jobs/", "post", "401", "#/components/responses/Unauthenticated"},
		{"/api/v1/jobs/", "post", "403", "#/components/responses/Forbidden"},
		{"/api/v1/jobs/", "post", "409", "#/components/responses/Conflict"},
		{"/api/v1/jobs/{id}", "get", "404", "#/components/responses/NotFound"},
		{"/api/v1/jobs/{id}", "get", "503", "#/components/responses/Unavailable"},
	} {
		if got, _ := get("paths", c.path, c.method, "responses", c.status, "$ref").(string); got != c.want {
			t.Errorf("%s %s %s: %q, want %q", c.method, c.path, c.status, got, c.want)
		}
	}
	if get("paths", "/api/v1/auth/login", "post", "responses", "401", "description") != "Bad credentials." {
		t.Error("the Doc's own 401 was replaced")
	}
	if get("paths", "/api/v1/jobs/{id}", "delete", "responses", "401") == nil || get("paths", "/api/v1/auth/login", "post", "responses", "401", "$ref") != nil {
		t.Error("401 is for authenticated routes, added only where the Doc has none")
	}
	for _, h := range []string{"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		has(get("components", "responses", "RateLimited", "headers", h), "429 header "+h)
	}
	has(get("components", "responses", "Unavailable", "headers", "Retry-After"), "503 Retry-After")
	for _, status := range []int{400, 401, 403, 404, 409, 413, 415, 429, 503} {
		name := strings.TrimPrefix(ErrorResponse(status)["$ref"].(string), "#/components/responses/")
		if get("components", "responses", name, "content", "application/json", "schema", "$ref") != "#/components/schemas/Error" {
			t.Errorf("response %s does not use the Error schema", name)
		}
	}
	has(get("components", "schemas", "Error", "properties", "error", "properties", "fields"), "Error.error.fields")
	if tags := get("tags").([]any); len(tags) < 3 {
		t.Errorf("tags %v", tags)
	}
	// Deterministic: the same input gives the same bytes (and so the same ETag).
	again, _ := build(t)
	if !bytes.Equal(doc, again) {
		t.Error("two builds differ")
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name    string
		routes  []feature.Route
		schemas map[string]any
		want    string
	}{
		{"unresolved schema", []feature.Route{{Name: "a", Method: "GET", Path: "/a", Handler: noop, Doc: map[string]any{
			"responses": map[string]any{"200": map[string]any{"description": "x", "content": map[string]any{"application/json": map[string]any{"schema": ref("Nope")}}}}}}},
			nil, "#/components/schemas/Nope"},
		{"duplicate operationId", []feature.Route{{Name: "a", Method: "GET", Path: "/a", Handler: noop}, {Name: "a", Method: "GET", Path: "/b", Handler: noop}}, nil, "operationId a"},
		{"duplicate operation", []feature.Route{{Name: "a", Method: "GET", Path: "/a/{x}", Handler: noop}, {Name: "b", Method: "GET", Path: "/a/{x:[0-9]+}", Handler: noop}}, nil, "declared twice"},
		{"parameter not in path", []feature.Route{{Name: "a", Method: "GET", Path: "/a", Handler: noop, Doc: map[string]any{
			"parameters": []any{map[string]any{"name": "id", "in": "path", "required": true}}}}}, nil, `"id" is not in`},
		{"bad method", []feature.Route{{Name: "a", Method: "FETCH", Path: "/a", Handler: noop}}, nil, "FETCH"},
		{"bad parameters", []feature.Route{{Name: "a", Method: "GET", Path: "/a", Handler: noop, Doc: map[string]any{"parameters": "x"}}}, nil, "want a list"},
	} {
		_, err := Build(testInfo, c.routes, c.schemas)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	if _, err := Build(Info{}, nil, nil); err == nil {
		t.Error("an empty Info was accepted")
	}
}

// A feature's own Error schema gives way to the document's.
func TestFeatureErrorSchemaIsReplaced(t *testing.T) {
	doc, err := Build(testInfo, nil, map[string]any{"Error": map[string]any{"type": "string"}, "Other": map[string]any{"type": "string"}})
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if d.Components.Schemas["Error"]["type"] != "object" || d.Components.Schemas["Other"]["type"] != "string" {
		t.Errorf("schemas %v", d.Components.Schemas)
	}
}

func TestPath(t *testing.T) {
	for in, want := range map[string]string{
		"/jobs/":                     "/api/v1/jobs/",
		"/jobs/{id}":                 "/api/v1/jobs/{id}",
		"/jobs/{id:[0-9]+}":          "/api/v1/jobs/{id}",
		"/a/{x:[a-z]{2}}/b/{y}":      "/api/v1/a/{x}/b/{y}",
		"/auth/oauth/{provider}/cb":  "/api/v1/auth/oauth/{provider}/cb",
		"/openapi.json":              "/api/v1/openapi.json",
		"/users/{user_id}/{id:.*}/x": "/api/v1/users/{user_id}/{id}/x",
	} {
		if got := Path(in); got != want {
			t.Errorf("Path(%s) = %s, want %s", in, got, want)
		}
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(f string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(f, a...))
}
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...) }

func TestCheckRoutes(t *testing.T) {
	doc, routes := build(t)
	CheckRoutes(t, doc, routes)

	// A route the document lacks, and an operation no route serves.
	rec := &recorder{TB: t}
	extra := append(routes[:len(routes):len(routes)], feature.Route{Name: "undocumented", Method: "GET", Path: "/secret", Access: feature.Public, Handler: noop})
	CheckRoutes(rec, doc, extra[1:]) // login dropped: the document has it, no route serves it
	joined := strings.Join(rec.errs, "\n")
	if len(rec.errs) != 2 || !strings.Contains(joined, "undocumented (GET /api/v1/secret) is not in the document") ||
		!strings.Contains(joined, "POST /api/v1/auth/login (login), which no route serves") {
		t.Errorf("CheckRoutes found:\n%s", joined)
	}
	// A renamed route.
	rec = &recorder{TB: t}
	renamed := append([]feature.Route(nil), routes...)
	renamed[0].Name = "signIn"
	CheckRoutes(rec, doc, renamed)
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], `operationId "login", want the route name "signIn"`) {
		t.Errorf("CheckRoutes on a renamed route: %v", rec.errs)
	}
	rec = &recorder{TB: t}
	CheckRoutes(rec, []byte(`{"openapi":"3.0.3","paths":{}}`), nil)
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "3.1") {
		t.Errorf("CheckRoutes on a 3.0 document: %v", rec.errs)
	}
}

// The document served by a real node, at both prefixes, with conditional requests.
func TestSpecRoute(t *testing.T) {
	spec := NewSpec()
	routes := syntheticRoutes(spec)
	h, err := server.Handler(routes, server.Options{Region: "eu-west"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path, etag string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := get("/api/v1/openapi.json", ""); r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("before Build: %d", r.StatusCode)
	}
	if err := spec.Build(testInfo, routes, syntheticSchemas()); err != nil {
		t.Fatal(err)
	}
	r := get("/api/v1/openapi.json", "")
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || r.Header.Get("ETag") == "" {
		t.Fatalf("GET: %d %v", r.StatusCode, r.Header)
	}
	CheckRoutes(t, body.Bytes(), routes)
	if r := get("/api/openapi.json", ""); r.StatusCode != 200 {
		t.Errorf("the /api alias: %d", r.StatusCode)
	}
	if r2 := get("/api/v1/openapi.json", r.Header.Get("ETag")); r2.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: %d", r2.StatusCode)
	}
	if r2 := get("/api/v1/openapi.json", `"stale"`); r2.StatusCode != 200 {
		t.Errorf("If-None-Match with another ETag: %d", r2.StatusCode)
	}
}

func BenchmarkBuild(b *testing.B) {
	routes := syntheticRoutes(NewSpec())
	schemas := syntheticSchemas()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(testInfo, routes, schemas); err != nil {
			b.Fatal(err)
		}
	}
}
