package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The API node and the router are built together only here: the tests and harnesses of either side
// must not link the other, or a change to one would break the other's build and the layers would
// knot again. The shared fixture links neither.
func TestLayersStayApart(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	const mod = "github.com/8thdegree/meridian/"
	for _, c := range []struct{ pkgs, forbidden []string }{
		{[]string{mod + "router/..."}, []string{mod + "api"}},
		{[]string{mod + "api/..."}, []string{mod + "router"}},
		{[]string{mod + "deploy/local/..."}, []string{mod + "api", mod + "router"}},
	} {
		out, err := exec.Command(goBin, append([]string{"list", "-test", "-deps"}, c.pkgs...)...).Output()
		if err != nil {
			t.Fatalf("go list -test -deps %v: %v", c.pkgs, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range c.forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%v (tests included) depend on %s", c.pkgs, dep)
				}
			}
		}
	}
}
