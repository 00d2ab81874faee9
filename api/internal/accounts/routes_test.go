package accounts

import (
	"regexp"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/feature"
)

// Every route is documented, every schema a document names exists, and every path parameter is
// described.
func TestRoutesAreDocumented(t *testing.T) {
	schemas := Schemas()
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					refs = append(refs, x.(string))
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(schemas)
	names := map[string]bool{}
	params := regexp.MustCompile(`\{([a-z_]+)(:[^}]*)?\}`)
	for _, rt := range (&Service{}).Routes() {
		if names[rt.Name] {
			t.Errorf("route name %s twice", rt.Name)
		}
		names[rt.Name] = true
		if rt.Doc["summary"] == "" || rt.Doc["responses"] == nil {
			t.Errorf("%s: no summary or responses", rt.Name)
		}
		if strings.HasPrefix(rt.Path, "/internal/") != (rt.Access == feature.Internal) {
			t.Errorf("%s: internal paths and Internal access must go together", rt.Name)
		}
		walk(rt.Doc)
		documented := map[string]bool{}
		if ps, ok := rt.Doc["parameters"].([]any); ok {
			for _, p := range ps {
				m := p.(map[string]any)
				if m["in"] == "path" {
					documented[m["name"].(string)] = true
				}
			}
		}
		for _, m := range params.FindAllStringSubmatch(rt.Path, -1) {
			if !documented[m[1]] {
				t.Errorf("%s: path parameter %s is not documented", rt.Name, m[1])
			}
		}
	}
	for _, ref := range refs {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		if _, ok := schemas[name]; !ok && name != "Error" { // Error comes from the assembler
			t.Errorf("%s is referenced but not in Schemas()", ref)
		}
	}
	if len(refs) == 0 {
		t.Fatal("no references found: the walk is broken")
	}
}

// MERIDIAN_FEATURE_API_KEYS=false takes away exactly the routes that manage API keys.
func TestDisableAPIKeysRemovesTheirRoutes(t *testing.T) {
	all := (&Service{}).Routes()
	off := (&Service{cfg: Config{DisableAPIKeys: true}}).Routes()
	var removed []string
	kept := map[string]bool{}
	for _, r := range off {
		kept[r.Name] = true
		if strings.HasPrefix(r.Path, "/auth/api-keys") {
			t.Errorf("%s %s is served with API keys disabled", r.Method, r.Path)
		}
	}
	for _, r := range all {
		if !kept[r.Name] {
			removed = append(removed, r.Name)
		}
	}
	if strings.Join(removed, ",") != "createAPIKey,listAPIKeys,revokeAPIKey" {
		t.Errorf("removed %v", removed)
	}
}
