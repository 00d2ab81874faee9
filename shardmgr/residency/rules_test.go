package residency

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// The directory's placement, as api/internal/accounts/directory.Locate computes it on the example
// topology (recorded from Locate itself: this layer may not import it). If Locate changes, the
// audit's claim rule must change with it, and these vectors with both.
func TestClaimKeyspaceIDMatchesLocate(t *testing.T) {
	topo := topology.Example()
	for _, v := range []struct{ email, region, ksid string }{
		{"a@example.test", "eu-west", "4016cf3de9fd0835"},
		{"b@example.test", "us-east", "2080f575734f4fd4"},
		{"c@example.test", "eu-west", "4041625189475acc"},
		{"dana@example.test", "ap-south", "609daf1b9f16fffc"},
		{"eve@example.test", "ap-south", "60b6e7550cceb7b2"},
		{"frank@example.test", "ap-south", "606401c319c05eee"},
	} {
		h := sha256.Sum256([]byte(v.email))
		k, err := claimKeyspaceID(topo, h[:])
		if err != nil {
			t.Fatal(err)
		}
		if k.String() != v.ksid || regionName(topo, k.Region()) != v.region {
			t.Errorf("%s: claim ksid %s in %s, the directory says %s in %s", v.email, k, regionName(topo, k.Region()), v.ksid, v.region)
		}
	}
	if _, err := claimKeyspaceID(&topology.Topology{}, make([]byte, 32)); err == nil {
		t.Error("no regions: no error")
	}
}

func TestRangePredicate(t *testing.T) {
	for _, c := range []struct {
		krs  []string
		want string
	}{
		{nil, "false"},
		{[]string{"-"}, "true"},
		{[]string{"20-2080"}, `((k >= '\x2000000000000000'::bytea AND k < '\x2080000000000000'::bytea))`},
		{[]string{"-20", "ff-"}, `((k < '\x2000000000000000'::bytea) OR (k >= '\xff00000000000000'::bytea))`},
	} {
		var krs []shardkey.KeyRange
		for _, s := range c.krs {
			krs = append(krs, shardkey.MustParseKeyRange(s))
		}
		if got := rangePredicate("k", krs); got != c.want {
			t.Errorf("%v: %s, want %s", c.krs, got, c.want)
		}
	}
}

func TestEveryClassHasARule(t *testing.T) {
	for _, c := range Classes {
		if c.Rule() == "" || strings.ContainsAny(string(c), " -") {
			t.Errorf("class %q has no rule or a bad name", c)
		}
	}
	if InMove.Violation() || !WrongShard.Violation() {
		t.Error("only in_move is not a violation")
	}
}
