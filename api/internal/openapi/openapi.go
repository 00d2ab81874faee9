// Package openapi assembles the API's OpenAPI 3.1 document from the routes the feature packages declare
// (each route's Doc is its Operation object; its Name is the operationId) and their component schemas,
// adds what is the same everywhere (security schemes, the error schema, error responses, rate-limit and
// request-ID headers, path parameters), checks that every $ref resolves, and serves the result at
// /api/v1/openapi.json.
//
// Only the canonical /api/v1 paths are listed; the /api alias is described, not duplicated. Internal
// (node-to-node) routes are left out: no client can call them, the edge router strips their secret.
package openapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/apierror"
)

// Version is the OpenAPI version of the document.
const Version = "3.1.0"

// Prefix is the canonical prefix of every path in the document.
const Prefix = "/api/v1"

// Info is the document's info object and servers.
type Info struct {
	Title       string
	Version     string
	Description string
	// Servers are base URLs clients use (the edge routers), e.g. "https://api.8thdegree.example".
	Servers []string
}

// aliasNote is appended to the description: the alias is part of the contract but listing it would
// double every operation (and its operationId, which must be unique).
const aliasNote = "Every path is also served without the version, under /api (the original 8thDegree paths), " +
	"with the same behaviour; only the canonical /api/v1 paths are listed here. A path that ends in / is also " +
	"served without it."

// Names of the components the document defines for everyone.
const (
	ErrorSchema          = "Error"
	SecurityBearer       = "bearerAuth"
	SecurityAPIKey       = "apiKeyAuth"
	ResponseBadRequest   = "BadRequest"
	ResponseUnauthorized = "Unauthenticated"
	ResponseForbidden    = "Forbidden"
	ResponseNotFound     = "NotFound"
	ResponseConflict     = "Conflict"
	ResponseTooLarge     = "RequestTooLarge"
	ResponseUnsupported  = "UnsupportedMediaType"
	ResponseRateLimited  = "RateLimited"
	ResponseUnavailable  = "Unavailable"
)

// errorResponses maps a status to its component response and its description.
var errorResponses = []struct {
	status int
	name   string
	desc   string
	codes  string
}{
	{400, ResponseBadRequest, "The request is malformed or has invalid fields (error.fields names them).", "invalid_request"},
	{401, ResponseUnauthorized, "No valid access token or API key.", "unauthenticated"},
	{403, ResponseForbidden, "The caller's role or API-key scope does not allow this.", "forbidden"},
	{404, ResponseNotFound, "No such object, or it is another user's private object.", "not_found"},
	{409, ResponseConflict, "The change conflicts with the current state.", "conflict, or a narrower code such as email_taken"},
	{413, ResponseTooLarge, "The request body is larger than 1 MiB.", "request_too_large"},
	{415, ResponseUnsupported, "The request body is not application/json.", "unsupported_media_type"},
	{429, ResponseRateLimited, "Too many requests; retry after Retry-After seconds.", "rate_limited"},
	{503, ResponseUnavailable, "The home region, a database shard or another dependency is unavailable; retry after Retry-After seconds.", "region_unavailable, shard_unavailable, unavailable"},
}

// ErrorResponse returns a reference to the document's standard response for status (400, 401, 403,
// 404, 409, 413, 415, 429 or 503), for feature packages that want it in their Docs.
func ErrorResponse(status int) map[string]any {
	for _, e := range errorResponses {
		if e.status == status {
			return map[string]any{"$ref": "#/components/responses/" + e.name}
		}
	}
	return map[string]any{"description": http.StatusText(status), "content": jsonContent(schemaRef(ErrorSchema))}
}

func schemaRef(name string) map[string]any {
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

func jsonContent(schema any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

func headerRef(name string) map[string]any {
	return map[string]any{"$ref": "#/components/headers/" + name}
}

// muxVar matches a gorilla/mux path variable, with or without a pattern: {id} or {id:[0-9]+}.
var muxVar = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}`)

// Path returns the document path of a route path (relative to /api/v1, gorilla/mux syntax).
func Path(routePath string) string {
	return Prefix + muxVar.ReplaceAllString(routePath, "{$1}")
}

func pathVars(routePath string) []string {
	var out []string
	for _, m := range muxVar.FindAllStringSubmatch(routePath, -1) {
		out = append(out, m[1])
	}
	return out
}

var methods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

// Build returns the OpenAPI 3.1 document of routes as indented JSON. schemas are the component schemas
// the routes' Docs reference; Error is provided (a feature's own Error is replaced by it). It fails on a
// duplicate operation or operationId, a path parameter the path lacks, and any $ref that does not resolve
// within the document.
func Build(info Info, routes []feature.Route, schemas map[string]any) ([]byte, error) {
	if info.Title == "" || info.Version == "" {
		return nil, errors.New("openapi: Info needs a Title and a Version")
	}
	desc := strings.TrimSpace(info.Description)
	if desc != "" {
		desc += "\n\n"
	}
	desc += aliasNote

	comps := components()
	allSchemas := comps["schemas"].(map[string]any)
	for name, s := range schemas {
		// A feature may describe the error body too (it is the same internal/apierror contract); the document's
		// own definition is the one kept, so there is one.
		if _, own := allSchemas[name]; !own {
			allSchemas[name] = s
		}
	}

	paths := map[string]any{}
	opIDs := map[string]string{}
	for _, rt := range routes {
		if rt.Access == feature.Internal {
			continue
		}
		method := strings.ToLower(rt.Method)
		if !methods[method] {
			return nil, fmt.Errorf("openapi: route %s: method %q", rt.Name, rt.Method)
		}
		if rt.Name == "" {
			return nil, fmt.Errorf("openapi: route %s %s has no name", rt.Method, rt.Path)
		}
		if prev, dup := opIDs[rt.Name]; dup {
			return nil, fmt.Errorf("openapi: operationId %s used by %s and %s %s", rt.Name, prev, rt.Method, rt.Path)
		}
		opIDs[rt.Name] = rt.Method + " " + rt.Path
		p := Path(rt.Path)
		item, _ := paths[p].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[p] = item
		}
		if _, dup := item[method]; dup {
			return nil, fmt.Errorf("openapi: %s %s declared twice", rt.Method, p)
		}
		op, err := operation(rt)
		if err != nil {
			return nil, err
		}
		item[method] = op
	}

	doc := map[string]any{
		"openapi":    Version,
		"info":       map[string]any{"title": info.Title, "version": info.Version, "description": desc},
		"paths":      paths,
		"components": comps,
		"tags":       tags(paths),
	}
	if len(info.Servers) > 0 {
		var servers []any
		for _, s := range info.Servers {
			servers = append(servers, map[string]any{"url": s})
		}
		doc["servers"] = servers
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("openapi: encoding: %w", err)
	}
	if err := checkRefs(buf.Bytes()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// operation merges a route's Doc with what the route's declaration already says.
func operation(rt feature.Route) (map[string]any, error) {
	op := maps.Clone(rt.Doc)
	if op == nil {
		op = map[string]any{}
	}
	op["operationId"] = rt.Name
	if _, ok := op["summary"]; !ok {
		op["summary"] = rt.Name
	}
	if _, ok := op["tags"]; !ok {
		if seg, _, _ := strings.Cut(strings.TrimPrefix(rt.Path, "/"), "/"); seg != "" && !strings.HasPrefix(seg, "{") {
			op["tags"] = []string{seg}
		}
	}

	// Path parameters: keep the Doc's, add the ones it leaves out, refuse ones the path lacks.
	params, err := asList(op["parameters"])
	if err != nil {
		return nil, fmt.Errorf("openapi: route %s: parameters: %w", rt.Name, err)
	}
	vars := pathVars(rt.Path)
	have := map[string]bool{}
	for _, p := range params {
		m, ok := p.(map[string]any)
		if !ok || m["in"] != "path" {
			continue
		}
		name, _ := m["name"].(string)
		if !slices.Contains(vars, name) {
			return nil, fmt.Errorf("openapi: route %s: path parameter %q is not in %s", rt.Name, name, rt.Path)
		}
		have[name] = true
	}
	for _, v := range vars {
		if !have[v] {
			params = append(params, map[string]any{"name": v, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
	}
	if len(params) > 0 {
		op["parameters"] = params
	}

	// Security: explicit per operation, so a public one says it needs nothing.
	switch {
	case rt.Access == feature.Public && rt.Scope != "":
		// Anyone may call it; credentials are optional, and an API key must have the scope.
		op["security"] = []any{
			map[string]any{},
			map[string]any{SecurityBearer: []string{}},
			map[string]any{SecurityAPIKey: []string{rt.Scope}},
		}
		op["x-meridian-scope"] = rt.Scope
		d, _ := op["description"].(string)
		op["description"] = strings.TrimSpace(d + "\n\nNo credentials are needed; an API key that is presented needs the scope " + rt.Scope + ".")
	case rt.Access == feature.Public:
		op["security"] = []any{}
	case rt.Access == feature.Authenticated:
		keyScopes := []string{}
		if rt.Scope != "" {
			keyScopes = []string{rt.Scope}
		}
		op["security"] = []any{
			map[string]any{SecurityBearer: []string{}},
			map[string]any{SecurityAPIKey: keyScopes},
		}
		var notes []string
		if len(rt.Roles) > 0 {
			roles := make([]string, len(rt.Roles))
			for i, r := range rt.Roles {
				roles[i] = string(r)
			}
			op["x-meridian-roles"] = roles
			notes = append(notes, "Roles: "+strings.Join(roles, ", ")+".")
		}
		if rt.Scope != "" {
			op["x-meridian-scope"] = rt.Scope
			notes = append(notes, "API keys need the scope "+rt.Scope+".")
		}
		if len(notes) > 0 {
			d, _ := op["description"].(string)
			op["description"] = strings.TrimSpace(d + "\n\n" + strings.Join(notes, " "))
		}
	}

	// Responses: keep the Doc's, add the standard errors this route can answer with.
	resp, err := asMap(op["responses"])
	if err != nil {
		return nil, fmt.Errorf("openapi: route %s: responses: %w", rt.Name, err)
	}
	add := func(status int) {
		if _, ok := resp[strconv.Itoa(status)]; !ok {
			resp[strconv.Itoa(status)] = ErrorResponse(status)
		}
	}
	if op["requestBody"] != nil {
		add(400)
		add(413)
		add(415)
	} else if len(params) > 0 {
		add(400)
	}
	if rt.Access == feature.Authenticated {
		add(401)
		add(403)
	}
	if len(vars) > 0 {
		add(404)
	}
	add(429)
	add(503)
	if !hasSuccess(resp) {
		resp["200"] = map[string]any{"description": "OK"}
	}
	op["responses"] = resp
	return op, nil
}

func hasSuccess(resp map[string]any) bool {
	for k := range resp {
		if len(k) == 3 && (k[0] == '2' || k[0] == '3') {
			return true
		}
	}
	return false
}

// asList copies a Doc's list, whatever slice type the feature used.
func asList(v any) ([]any, error) {
	switch l := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return slices.Clone(l), nil
	case []map[string]any:
		out := make([]any, len(l))
		for i, m := range l {
			out[i] = m
		}
		return out, nil
	}
	return nil, fmt.Errorf("a %T, want a list", v)
}

func asMap(v any) (map[string]any, error) {
	switch m := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return maps.Clone(m), nil
	}
	return nil, fmt.Errorf("a %T, want an object", v)
}

// tags lists the tags the operations use, sorted, so tools show the groups in a stable order.
func tags(paths map[string]any) []any {
	seen := map[string]bool{}
	for _, item := range paths {
		for _, op := range item.(map[string]any) {
			switch ts := op.(map[string]any)["tags"].(type) {
			case []string:
				for _, t := range ts {
					seen[t] = true
				}
			case []any:
				for _, t := range ts {
					if s, ok := t.(string); ok {
						seen[s] = true
					}
				}
			}
		}
	}
	names := slices.Sorted(maps.Keys(seen))
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = map[string]any{"name": n}
	}
	return out
}

func components() map[string]any {
	intHeader := func(desc string) map[string]any {
		return map[string]any{"description": desc, "schema": map[string]any{"type": "integer", "minimum": 0}}
	}
	headers := map[string]any{
		"X-Request-ID":        map[string]any{"description": "The request's ID, also in error bodies; quote it when reporting a problem.", "schema": map[string]any{"type": "string"}},
		"X-Meridian-Region":   map[string]any{"description": "The region that served the request.", "schema": map[string]any{"type": "string"}},
		"Retry-After":         intHeader("Seconds to wait before retrying."),
		"RateLimit-Limit":     intHeader("The caller's burst: the most requests it may make at once."),
		"RateLimit-Remaining": intHeader("Requests the caller may still make right now."),
		"RateLimit-Reset":     intHeader("Seconds until the caller's budget is whole again."),
		"RateLimit-Policy":    map[string]any{"description": `The budget: "rate;w=window-seconds;burst=n".`, "schema": map[string]any{"type": "string"}},
	}
	responses := map[string]any{}
	for _, e := range errorResponses {
		r := map[string]any{
			"description": e.desc + " error.code: " + e.codes + ".",
			"content":     jsonContent(schemaRef(ErrorSchema)),
			"headers":     map[string]any{"X-Request-ID": headerRef("X-Request-ID"), "X-Meridian-Region": headerRef("X-Meridian-Region")},
		}
		h := r["headers"].(map[string]any)
		switch e.status {
		case 429:
			for _, n := range []string{"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"} {
				h[n] = headerRef(n)
			}
		case 503:
			h["Retry-After"] = headerRef("Retry-After")
		}
		responses[e.name] = r
	}
	return map[string]any{
		"schemas": map[string]any{
			ErrorSchema: map[string]any{
				"type":     "object",
				"required": []string{"error"},
				"properties": map[string]any{
					"error": map[string]any{
						"type":     "object",
						"required": []string{"code", "message"},
						"properties": map[string]any{
							"code":       map[string]any{"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "description": "Machine-readable, snake_case."},
							"message":    map[string]any{"type": "string", "description": "For humans."},
							"request_id": map[string]any{"type": "string"},
							"fields": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"},
								"description": "For invalid_request: request field (JSON name, dotted when nested) → what is wrong with it."},
							"details": map[string]any{"type": "object",
								"description": "What the client needs to act on the error, e.g. for account_exists: provider, link_token, link_url, expires_in."},
						},
					},
				},
			},
		},
		"responses": responses,
		"headers":   headers,
		"securitySchemes": map[string]any{
			SecurityBearer: map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
				"description": "An access token from /auth/login, /auth/register or /auth/refresh: Authorization: Bearer <token>."},
			SecurityAPIKey: map[string]any{"type": "apiKey", "in": "header", "name": "Authorization",
				"description": "An API key from /auth/api-keys: Authorization: ApiKey <key>. A key acts for its user within its scopes."},
		},
	}
}

// checkRefs resolves every local $ref of the encoded document.
func checkRefs(doc []byte) error {
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		return err
	}
	var bad []string
	var walk func(v any)
	walk = func(v any) {
		switch n := v.(type) {
		case map[string]any:
			if ref, ok := n["$ref"].(string); ok {
				if !strings.HasPrefix(ref, "#/") {
					bad = append(bad, ref+" (not local)")
				} else if _, ok := pointer(root, ref[2:]); !ok {
					bad = append(bad, ref)
				}
			}
			for _, c := range n {
				walk(c)
			}
		case []any:
			for _, c := range n {
				walk(c)
			}
		}
	}
	walk(root)
	if len(bad) > 0 {
		sort.Strings(bad)
		bad = slices.Compact(bad)
		return fmt.Errorf("openapi: unresolved $ref: %s", strings.Join(bad, ", "))
	}
	return nil
}

// pointer follows a JSON pointer (RFC 6901, without the leading #/).
func pointer(root any, ptr string) (any, bool) {
	cur := root
	for _, tok := range strings.Split(ptr, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Spec serves a built document. The zero value is not ready; use NewSpec.
type Spec struct {
	doc atomic.Pointer[served]
}

type served struct {
	body []byte
	etag string
}

// NewSpec returns a Spec with no document yet: its route answers 503 until Set or Build.
func NewSpec() *Spec { return &Spec{} }

// Set replaces the served document.
func (s *Spec) Set(doc []byte) {
	sum := sha256.Sum256(doc)
	s.doc.Store(&served{body: doc, etag: `"` + hex.EncodeToString(sum[:12]) + `"`})
}

// Build builds the document (Build) and serves it.
func (s *Spec) Build(info Info, routes []feature.Route, schemas map[string]any) error {
	doc, err := Build(info, routes, schemas)
	if err != nil {
		return err
	}
	s.Set(doc)
	return nil
}

// Route is GET /openapi.json (so /api/v1/openapi.json): the document, public, with an ETag.
func (s *Spec) Route() feature.Route {
	return feature.Route{
		Name:   "getOpenAPI",
		Method: http.MethodGet,
		Path:   "/openapi.json",
		Access: feature.Public,
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			d := s.doc.Load()
			if d == nil {
				return apierror.Unavailable("the API description is not ready yet", time.Second)
			}
			h := w.Header()
			h.Set("ETag", d.etag)
			h.Set("Cache-Control", "public, max-age=300")
			if match := r.Header.Get("If-None-Match"); match != "" && (match == d.etag || match == "*") {
				w.WriteHeader(http.StatusNotModified)
				return nil
			}
			h.Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write(d.body)
			return nil
		},
		Doc: map[string]any{
			"summary":     "This document",
			"description": "The OpenAPI 3.1 description of the API. Conditional requests with If-None-Match are answered 304 when it has not changed.",
			"tags":        []string{"meta"},
			"responses": map[string]any{
				"200": map[string]any{"description": "The OpenAPI document.",
					"headers": map[string]any{"ETag": map[string]any{"schema": map[string]any{"type": "string"}}},
					"content": jsonContent(map[string]any{"type": "object"})},
				"304": map[string]any{"description": "Not modified since the ETag given in If-None-Match."},
			},
		},
	}
}

// Ref points at a component schema.
func Ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

// JSONBody is a required JSON request body of a component schema.
func JSONBody(schema string) map[string]any {
	return map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": Ref(schema)}}}
}

// PathParam is a required string path parameter.
func PathParam(name, description string) map[string]any {
	return map[string]any{"name": name, "in": "path", "required": true, "description": description,
		"schema": map[string]any{"type": "string"}}
}

// Operation is the Operation object of a feature's route: its tag, summary and description, its
// parameters (none: left out), its request body (nil: none) and its responses.
func Operation(tag, summary, description string, params []any, body, responses map[string]any) map[string]any {
	o := map[string]any{"summary": summary, "description": description, "tags": []string{tag}, "responses": responses}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if body != nil {
		o["requestBody"] = body
	}
	return o
}

// Responses is a success response with a component schema and the document's standard response for
// each status in errs; 421 is the replay hint of data homed in another region.
func Responses(ok int, desc, schema string, errs ...int) map[string]any {
	r := map[string]any{strconv.Itoa(ok): map[string]any{"description": desc,
		"content": map[string]any{"application/json": map[string]any{"schema": Ref(schema)}}}}
	for _, code := range errs {
		if code == http.StatusMisdirectedRequest {
			r["421"] = map[string]any{"description": "The data is homed in another region; replay in the region named by X-Meridian-Replay-Region.",
				"content": map[string]any{"application/json": map[string]any{"schema": Ref(ErrorSchema)}}}
			continue
		}
		r[strconv.Itoa(code)] = ErrorResponse(code)
	}
	return r
}
