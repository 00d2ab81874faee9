package discovery

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Consul = &consul.Client{}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		field  string
		change func(*Config)
	}{
		{"Consul", func(c *Config) { c.Consul = nil }},
		{"WaitTime", func(c *Config) { c.WaitTime = 0 }},
		{"WaitTime", func(c *Config) { c.WaitTime = time.Hour }},
		{"MinBackoff", func(c *Config) { c.MaxBackoff = c.MinBackoff / 2 }},
		{"MinInterval", func(c *Config) { c.MinInterval = -1 }},
	} {
		c := good
		tc.change(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("bad %s accepted", tc.field)
		}
	}
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	lo, hi := 100*time.Millisecond, 10*time.Second
	for attempt := 1; attempt < 100; attempt++ {
		d := backoff(lo, hi, attempt)
		want := min(lo<<min(attempt-1, 20), hi)
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: %v, want in [%v, %v]", attempt, d, want/2, want)
		}
	}
}

func TestNodesUsesTheServiceAddressElseTheNode(t *testing.T) {
	got := nodes([]*consul.ServiceEntry{
		{Node: &consul.Node{Node: "n1", Address: "10.0.0.1"}, Service: &consul.AgentService{ID: "a", Address: "10.1.0.1", Port: 80}},
		{Node: &consul.Node{Node: "n2", Address: "10.0.0.2"}, Service: &consul.AgentService{ID: "b", Port: 81}},
		{Node: &consul.Node{Node: "n3"}}, // no service: skipped
	})
	want := []Node{{ID: "n1/a", Addr: "10.1.0.1:80"}, {ID: "n2/b", Addr: "10.0.0.2:81"}}
	if !slices.Equal(got, want) {
		t.Fatalf("nodes = %v, want %v", got, want)
	}
}

// The watcher follows registrations and health checks with blocking queries, tells OnUpdate, and
// stops following a region that leaves the topology.
func TestFollowsConsul(t *testing.T) {
	c := testenv.Consul(t)
	client := testenv.ConsulClient(t, c, local.RoleNode) // registers the nodes
	prefix := fmt.Sprintf("disc-%d", time.Now().UnixNano()%1_000_000_000)
	topo := topology.Example()
	for i := range topo.Regions {
		topo.Regions[i].APIService = prefix + "-" + topo.Regions[i].Name
	}
	eu := topo.Regions[0]
	register := func(id string, port int) string {
		check := "check-" + prefix + "-" + id
		err := client.Agent().ServiceRegister(&consul.AgentServiceRegistration{
			ID: prefix + "-" + id, Name: eu.APIService, Address: "127.0.0.1", Port: port,
			Check: &consul.AgentServiceCheck{CheckID: check, TTL: "1h", Status: consul.HealthPassing},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Agent().ServiceDeregister(prefix + "-" + id) })
		return check
	}
	register("a", 9001)

	var mu sync.Mutex
	updates := map[string]int{}
	cfg := DefaultConfig()
	// The watcher reads as a router does.
	cfg.Consul, cfg.WaitTime = testenv.ConsulClient(t, c, local.RoleRouter), 2*time.Second
	cfg.OnUpdate = func(s Snapshot) {
		mu.Lock()
		updates[s.Name]++
		mu.Unlock()
	}
	w, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.Snapshot(eu.Name); ok {
		t.Fatal("a region is known before any topology")
	}
	ctx, cancel := context.WithCancel(context.Background())
	topos := make(chan *topology.Topology, 1)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, topos) }()
	t.Cleanup(func() { cancel(); _ = <-done })
	topos <- topo

	addrs := func() []string {
		s, ok := w.Snapshot(eu.Name)
		if !ok || !s.Known {
			return nil
		}
		var out []string
		for _, n := range s.Nodes {
			out = append(out, n.Addr)
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, "the first node", func() bool { return slices.Equal(addrs(), []string{"127.0.0.1:9001"}) })
	if s, _ := w.Snapshot(eu.Name); s.Service != eu.APIService || s.DC != eu.ConsulDC {
		t.Errorf("snapshot of %+v", s.Region)
	}
	// Another region with no node is known to have none.
	waitFor(t, "an empty region to be known", func() bool {
		s, ok := w.Snapshot(topo.Regions[1].Name)
		return ok && s.Known && len(s.Nodes) == 0
	})

	checkB := register("b", 9002)
	waitFor(t, "a node that joins", func() bool {
		return slices.Equal(addrs(), []string{"127.0.0.1:9001", "127.0.0.1:9002"})
	})
	if err := client.Agent().UpdateTTL(checkB, "down", consul.HealthCritical); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failing node to leave", func() bool { return slices.Equal(addrs(), []string{"127.0.0.1:9001"}) })
	mu.Lock()
	n := updates[eu.Name]
	mu.Unlock()
	if n < 3 {
		t.Errorf("OnUpdate heard %d answers for %s, want at least 3", n, eu.Name)
	}

	// The region leaves the topology: it is no longer followed.
	next := *topo
	next.Version++
	next.Regions = slices.Clone(topo.Regions[1:])
	topos <- &next
	waitFor(t, "the region to be forgotten", func() bool { _, ok := w.Snapshot(eu.Name); return !ok })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
