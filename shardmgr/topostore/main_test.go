package topostore_test

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// TestMain lets the harness start the real Consul agent these tests share, and stop it afterwards.
func TestMain(m *testing.M) { testenv.Main(m) }

// consulClient returns a client of agent, or of the shared agent when agent is nil. Integration tests
// are skipped with -short.
func consulClient(t testing.TB, agent *local.Consul) *api.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real Consul agent; skipped with -short")
	}
	if agent == nil {
		agent = testenv.Consul(t)
	}
	// shardmgr's role: the tests write topologies as it does, and read them as routers do.
	return testenv.ConsulClient(t, agent, local.RoleShardmgr)
}

// uniqueKey returns a KV key no other test (or earlier run against a reused agent) uses.
func uniqueKey(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return "test/topostore/" + name + "-" + hex.EncodeToString(b)
}

func example(version uint64) *topology.Topology {
	t := topology.Example()
	t.Version = version
	return t
}
