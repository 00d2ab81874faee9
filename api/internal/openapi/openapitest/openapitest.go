// Package openapitest checks the API's OpenAPI document in tests: against the routes a node serves
// (openapi.CheckRoutes) and against the OpenAPI 3.1 specification, with kin-openapi. It lives apart from
// package openapi so that the node's binary does not link a validator it never runs.
package openapitest

import (
	"context"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/openapi"
)

// Check fails t unless doc is a valid OpenAPI 3.1 document that lists exactly the public and
// authenticated routes of routes (Internal ones are not published).
func Check(t testing.TB, doc []byte, routes []feature.Route) {
	t.Helper()
	Validate(t, doc)
	openapi.CheckRoutes(t, doc, routes)
}

// Validate fails t unless kin-openapi loads doc as OpenAPI 3.1 and finds it valid, schemas included
// (JSON Schema 2020-12).
func Validate(t testing.TB, doc []byte) {
	t.Helper()
	d, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		t.Fatalf("openapi: kin-openapi cannot load the document: %v", err)
		return
	}
	if !d.IsOpenAPI31OrLater() {
		t.Fatalf("openapi: version %q is not 3.1", d.OpenAPI)
		return
	}
	if err := d.Validate(context.Background()); err != nil {
		t.Errorf("openapi: the document is not valid OpenAPI 3.1: %v", err)
	}
}
