package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/fleet"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// metricsText is what a node's /metrics says of its keyrange counters, among other families.
func metricsText(series map[string]Counts) string {
	var b strings.Builder
	b.WriteString("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 12\n")
	b.WriteString("# HELP " + Metric + " Requests.\n# TYPE " + Metric + " counter\n")
	for key, c := range series {
		kr, shard, _ := strings.Cut(key, "@")
		fmt.Fprintf(&b, "%s{keyrange=%q,kind=\"read\",shard=%q} %d\n", Metric, kr, shard, c.Reads)
		fmt.Fprintf(&b, "%s{keyrange=%q,kind=\"write\",shard=%q} %d\n", Metric, kr, shard, c.Writes)
	}
	return b.String()
}

// metricsServer serves the series ("keyrange@shard" → counts) as a node's /metrics.
func metricsServer(t *testing.T, series map[string]Counts) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte(metricsText(series)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestScrape(t *testing.T) {
	srv := metricsServer(t, map[string]Counts{"20-2080@us-east-1": {Reads: 5, Writes: 2}, "20-2080@us-east-3": {Reads: 1}, "2080-21@us-east-2": {Writes: 7}})
	got, err := scrape(context.Background(), Options{Client: srv.Client(), Timeout: time.Second}, srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// The keyrange's counts on both shards add up: it moved, the load is the keyrange's.
	if got["20-2080"] != (Counts{Reads: 6, Writes: 2}) || got["2080-21"] != (Counts{Writes: 7}) || len(got) != 2 {
		t.Fatalf("scraped %v", got)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusInternalServerError) }))
	defer bad.Close()
	if _, err := scrape(context.Background(), Options{Client: bad.Client(), Timeout: time.Second}, bad.Listener.Addr().String()); err == nil {
		t.Fatal("a 500 was scraped")
	}
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(Metric + "{keyrange=\"20-21\" 1\n"))
	}))
	defer garbage.Close()
	if _, err := scrape(context.Background(), Options{Client: garbage.Client(), Timeout: time.Second}, garbage.Listener.Addr().String()); err == nil {
		t.Fatal("malformed metrics were scraped")
	}
}

func TestSumAndSince(t *testing.T) {
	krs := []KeyRange{{Shard: "s1", Region: "r"}, {Shard: "s2", Region: "r"}}
	krs[0].Range.Start, krs[0].Range.End = 0x2000000000000000, 0x2080000000000000
	krs[1].Range.Start, krs[1].Range.End = 0x2080000000000000, 0x2100000000000000
	a, b := krs[0].Range.String(), krs[1].Range.String()
	node := func(id string, m map[string]Counts) Node {
		return Node{Region: "r", Node: fleet.Node{ID: id, Passing: true}, KeyRanges: m}
	}
	earlier := sum(krs, []Node{
		node("n1", map[string]Counts{a: {Reads: 10, Writes: 1}, b: {Reads: 4}}),
		node("n2", map[string]Counts{a: {Reads: 100}}),
		{Region: "r", Node: fleet.Node{ID: "n4"}, Err: errors.New("down")},
	}, time.Unix(0, 0))
	if earlier.KeyRanges[0].Counts != (Counts{Reads: 110, Writes: 1}) || earlier.KeyRanges[1].Counts != (Counts{Reads: 4}) {
		t.Fatalf("sum: %+v", earlier.KeyRanges)
	}
	if earlier.Nodes[0].Counts != (Counts{Reads: 14, Writes: 1}) || len(earlier.Failed()) != 1 {
		t.Fatalf("node sums: %+v", earlier.Nodes)
	}
	later := sum(krs, []Node{
		node("n1", map[string]Counts{a: {Reads: 15, Writes: 1}, b: {Reads: 4}, "20-21": {Reads: 9}}),
		node("n2", map[string]Counts{a: {Reads: 3}}),  // restarted: counted from zero
		node("n3", map[string]Counts{b: {Writes: 2}}), // new
		node("n4", map[string]Counts{a: {Reads: 1000}}),
	}, time.Unix(60, 0))
	d := later.Since(earlier)
	if d.KeyRanges[0].Counts != (Counts{Reads: 5 + 3}) || d.KeyRanges[1].Counts != (Counts{Writes: 2}) {
		t.Fatalf("since: %+v", d.KeyRanges)
	}
	// A keyrange outside the topology (a split's parent) counts in its node's total only.
	if d.Nodes[0].Counts != (Counts{Reads: 5 + 9}) {
		t.Fatalf("since, n1: %+v", d.Nodes[0])
	}
	// n4 failed in the earlier measure: nothing to subtract from, so it counts nothing.
	if d.Nodes[3].Err == nil || d.Nodes[3].Total() != 0 {
		t.Fatalf("since, n4: %+v", d.Nodes[3])
	}
}

// Collect against the real Consul: fake nodes of two regions registered with TTL checks, each serving
// a node's /metrics text; a critical node is not scraped; a node whose /metrics fails is reported.
func TestCollect(t *testing.T) {
	agent := testenv.Consul(t)
	c := testenv.ConsulClient(t, agent, local.RoleShardmgr)
	node := testenv.ConsulClient(t, agent, local.RoleNode) // registers the fake nodes
	prefix := fmt.Sprintf("load-test-%08x", rand.Uint32())
	topo := topology.Example()
	for i := range topo.Regions {
		topo.Regions[i].APIService = prefix + "-" + topo.Regions[i].Name
	}
	tab, err := topology.Compile(topo)
	if err != nil {
		t.Fatal(err)
	}
	var east, west topology.Route
	for _, r := range tab.Routes() {
		switch {
		case r.Shard.Region == "us-east" && east.Shard == nil:
			east = r
		case r.Shard.Region == "eu-west" && west.Shard == nil:
			west = r
		}
	}
	ek, wk := east.Range.String(), west.Range.String()
	register := func(region, id, status string, srv *httptest.Server) {
		t.Helper()
		host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		svc, _ := topo.Region(region)
		reg := &consul.AgentServiceRegistration{ID: prefix + "-" + id, Name: svc.APIService, Address: host, Port: p,
			Check: &consul.AgentServiceCheck{CheckID: prefix + "-" + id + "-ttl", TTL: "1h", Status: status}}
		if err := node.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = node.Agent().ServiceDeregister(reg.ID) })
	}
	register("us-east", "e1", consul.HealthPassing, metricsServer(t, map[string]Counts{ek + "@" + east.Shard.Name: {Reads: 10, Writes: 3}}))
	register("us-east", "e2", consul.HealthPassing, metricsServer(t, map[string]Counts{ek + "@" + east.Shard.Name: {Reads: 5}}))
	register("us-east", "e3-down", consul.HealthCritical, metricsServer(t, map[string]Counts{ek + "@" + east.Shard.Name: {Reads: 1000}}))
	register("eu-west", "w1", consul.HealthPassing, metricsServer(t, map[string]Counts{wk + "@" + west.Shard.Name: {Writes: 8}}))
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }))
	t.Cleanup(broken.Close)
	register("eu-west", "w2-broken", consul.HealthPassing, broken)

	l, err := Collect(context.Background(), c, topo)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Nodes) != 4 {
		t.Fatalf("%d nodes scraped, want the 4 passing ones: %+v", len(l.Nodes), l.Nodes)
	}
	failed := l.Failed()
	if len(failed) != 1 || !strings.HasSuffix(failed[0].ID, "w2-broken") || !errors.Is(failed[0].Err, ErrScrape) {
		t.Fatalf("failed nodes: %+v", failed)
	}
	got := map[string]Counts{}
	for _, kr := range l.KeyRanges {
		if kr.Total() != 0 {
			got[kr.Range.String()+"@"+kr.Shard] = kr.Counts
		}
	}
	want := map[string]Counts{ek + "@" + east.Shard.Name: {Reads: 15, Writes: 3}, wk + "@" + west.Shard.Name: {Writes: 8}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keyrange load %v, want %v", got, want)
	}
	if len(l.KeyRanges) != len(topo.KeyRanges) {
		t.Fatalf("%d keyranges, want every one of the topology's %d", len(l.KeyRanges), len(topo.KeyRanges))
	}
	for _, n := range l.Nodes {
		if strings.HasSuffix(n.ID, "-e1") && (n.Counts != Counts{Reads: 10, Writes: 3} || n.Region != "us-east") {
			t.Fatalf("node e1: %+v", n)
		}
	}

	bad := topo.Clone()
	bad.KeyRanges = bad.KeyRanges[1:]
	if _, err := Collect(context.Background(), c, bad); err == nil {
		t.Fatal("an invalid topology was measured")
	}
}
