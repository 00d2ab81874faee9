package router_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The router verifies access tokens and never issues them: it must not link the package that holds
// the nodes' private keys, nor any of the API node's code.
func TestRouterDoesNotLinkNodeCode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/8thdegree/meridian/cmd/router").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/8thdegree/meridian/internal/tokenissue" || strings.HasPrefix(pkg, "github.com/8thdegree/meridian/api") {
			t.Errorf("the router links %s", pkg)
		}
	}
}
