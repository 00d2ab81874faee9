package jobs

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// Every route is documented, and every schema a document refers to exists (Error comes from the
// document's assembler).
func TestRoutesAreDocumented(t *testing.T) {
	pools, err := shardpool.New(shardpool.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &feature.Deps{Region: "eu-west", Pools: pools, IDs: shardkey.NewGenerator(nil, nil)}
	s, err := New(a, DefaultConfig(), Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	schemas := Schemas()
	all, err := json.Marshal(schemas)
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`"#/components/schemas/([A-Za-z]+)"`)
	seen := 0
	check := func(where string, doc []byte) {
		for _, m := range refs.FindAllSubmatch(doc, -1) {
			seen++
			if name := string(m[1]); name != "Error" && schemas[name] == nil {
				t.Errorf("%s refers to the unknown schema %s", where, name)
			}
		}
	}
	check("Schemas", all)
	names := map[string]bool{}
	var searchAt, idAt int
	for i, rt := range s.Routes() {
		if names[rt.Name] {
			t.Errorf("route name %s repeated", rt.Name)
		}
		names[rt.Name] = true
		if rt.Doc["summary"] == "" || rt.Doc["description"] == "" || rt.Doc["responses"] == nil {
			t.Errorf("%s: incomplete Doc", rt.Name)
		}
		doc, err := json.Marshal(rt.Doc)
		if err != nil {
			t.Fatalf("%s: %v", rt.Name, err)
		}
		check(rt.Name, doc)
		if strings.Contains(rt.Path, "{id}") {
			if !strings.Contains(string(doc), `"in":"path"`) {
				t.Errorf("%s: the path parameter is not documented", rt.Name)
			}
			idAt = i
		}
		if rt.Path == "/jobs/search" {
			searchAt = i
		}
	}
	if seen < 10 {
		t.Errorf("only %d schema references found", seen)
	}
	if searchAt > idAt {
		t.Error("/jobs/search must come before /jobs/{id}")
	}
	if _, err := New(&feature.Deps{}, DefaultConfig(), Hooks{}); err == nil {
		t.Error("New accepted an app without pools")
	}
	if _, err := New(&feature.Deps{Pools: pools, IDs: shardkey.NewGenerator(nil, nil)}, Config{}, Hooks{}); err == nil {
		t.Error("New accepted a zero config")
	}
}
