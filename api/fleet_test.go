package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/fleet"
	"github.com/8thdegree/meridian/shardmgr/load"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// The names the node writes and shardmgr/fleet reads must agree.
func TestTopologyVersionMetaMatchesFleet(t *testing.T) {
	if TopologyVersionMeta != fleet.VersionMeta {
		t.Fatalf("api publishes %q, fleet reads %q", TopologyVersionMeta, fleet.VersionMeta)
	}
	if TopologyPath != fleet.VersionPath {
		t.Fatalf("api answers on %q, fleet asks %q", TopologyPath, fleet.VersionPath)
	}
	if OpsAddrMeta != fleet.OpsAddrMeta {
		t.Fatalf("api publishes %q, fleet reads %q", OpsAddrMeta, fleet.OpsAddrMeta)
	}
}

// serveNode runs a real node of region ap-south (as cmd/api runs it, with mutual TLS) on the fixture,
// and returns the base URLs of its operations listener and its API, and a stop that waits for Serve to
// return.
func serveNode(t *testing.T, fx *fixture.Fixture) (*Node, string, string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"MERIDIAN_REGION": "ap-south", "CONSUL_HTTP_ADDR": fx.ConsulAddr, "CONSUL_HTTP_TOKEN_FILE": fx.ConsulAgent.TokenFile(local.RoleNode), "MERIDIAN_TOPOLOGY_KEY": fx.Key,
		"MERIDIAN_TOPOLOGY_CACHE": filepath.Join(t.TempDir(), "topology.json"), "MERIDIAN_SIGNING_KEY_DIR": fx.KeyDir(t),
		"MERIDIAN_EMAIL_PEPPER": "pepper-0123456789abc", "MERIDIAN_MAIL_DIR": t.TempDir(),
		"MERIDIAN_OAUTH_STATE_KEY": "state-key-0123456789", "MERIDIAN_LISTEN": ln.Addr().String(),
	} {
		t.Setenv(k, v)
	}
	tlsEnv(t, fx, mtls.Node("ap-south", "ap-south-1"))
	ops, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	node, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.ServeListeners(ctx, ln, ops) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return node, "http://" + ops.Addr().String(), "https://" + ln.Addr().String(), stop
}

// tlsEnv sets the node's TLS files, issued for id by the fixture's CA.
func tlsEnv(t *testing.T, fx *fixture.Fixture, id mtls.Identity) {
	t.Helper()
	f := fx.PKI.Files(t, id)
	t.Setenv("MERIDIAN_TLS_CA_FILE", f.CA)
	t.Setenv("MERIDIAN_TLS_CERT_FILE", f.Cert)
	t.Setenv("MERIDIAN_TLS_KEY_FILE", f.Key)
}

// routerClient calls nodes with the certificate of an edge router, as routers do.
func routerClient(t *testing.T, fx *fixture.Fixture) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: fx.PKI.Source(t, mtls.Router("ap-south")).ClientConfig(mtls.NodesOnly)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// A node answers the version its pools hold on /topologyz: at once without min, as soon as it holds
// min when asked to wait, with what it holds when the wait runs out; bad parameters are a 400.
func TestNodeAnswersTopologyVersion(t *testing.T) {
	ctx := context.Background()
	fx := fixture.New(t, fixture.Options{Shards: true, Consul: true})
	node, base, _, _ := serveNode(t, fx)
	for deadline := time.Now().Add(30 * time.Second); node.pools.Table() == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no topology applied")
		}
	}
	type answer struct {
		Version uint64 `json:"version"`
		Error   string `json:"error"`
	}
	get := func(query string) (int, answer) {
		t.Helper()
		resp, err := http.Get(base + TopologyPath + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, a
	}
	have := fx.Topology.Version
	if st, a := get(""); st != http.StatusOK || a.Version != have {
		t.Fatalf("without min: %d %+v, want version %d", st, a, have)
	}
	for _, q := range []string{"?min=x", "?min=-1", "?wait=forever", "?wait=1h", "?wait=-1s"} {
		if st, a := get(q); st != http.StatusBadRequest || a.Error == "" {
			t.Errorf("%s: %d %+v, want a 400 that says why", q, st, a)
		}
	}
	start := time.Now()
	if st, a := get(fmt.Sprintf("?min=%d&wait=50ms", have+1)); st != http.StatusOK || a.Version != have || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("a version not applied: %d %+v after %v; want %d after the wait", st, a, time.Since(start), have)
	}
	got := make(chan answer, 1)
	go func() {
		_, a := get(fmt.Sprintf("?min=%d&wait=10s", have+1))
		got <- a
	}()
	time.Sleep(50 * time.Millisecond)
	next, err := fx.Store.Modify(ctx, func(*topology.Topology) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.Version != next.Version {
			t.Fatalf("the long poll answered %+v, want %d", a, next.Version)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll did not answer when the node applied the version")
	}
}

// A real node publishes the topology version its pools route with in its Consul registration, after
// applying it: fleet.WaitApplied sees each new version, a write to a keyrange frozen by that version is
// held by the node, the node never stops passing for the re-registrations, and /readyz and /metrics
// say the same version. Requests are counted per keyrange on /metrics.
func TestNodePublishesTopologyVersion(t *testing.T) {
	ctx := context.Background()
	fx := fixture.New(t, fixture.Options{Shards: true, Consul: true})
	service := fx.Topology.Regions[2].APIService
	node, base, apiURL, stop := serveNode(t, fx)
	client := routerClient(t, fx)

	var nodes []fleet.Node
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		nodes, err = fleet.Nodes(ctx, fx.Consul, service)
		if err == nil && len(nodes) == 1 && nodes[0].Passing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node is not passing in Consul: %+v, %v", nodes, err)
		}
	}
	if nodes[0].Version != fx.Topology.Version {
		t.Fatalf("the node publishes version %d, the topology is at %d", nodes[0].Version, fx.Topology.Version)
	}

	// From here on, every state Consul reports of the node must be passing.
	var notPassing atomic.Int32
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var index uint64
		for watchCtx.Err() == nil {
			entries, meta, err := fx.Consul.Health().Service(service, "", false, (&consul.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(watchCtx))
			if err != nil {
				continue
			}
			if len(entries) != 1 || entries[0].Checks.AggregatedStatus() != consul.HealthPassing {
				notPassing.Add(1)
			}
			index = meta.LastIndex
		}
	}()

	// Freeze the keyrange of one ap-south user; once the node publishes that version, its writes there
	// are held.
	gen := shardkey.NewGenerator(nil, nil)
	user, err := gen.New(shardkey.KindUser, shardkey.NewKeyspaceID(fx.Topology.Regions[2].Code, []byte("counted-user")))
	if err != nil {
		t.Fatal(err)
	}
	k := user.KeyspaceID()
	setState := func(st topology.State) *topology.Topology {
		t.Helper()
		next, err := fx.Store.Modify(ctx, func(topo *topology.Topology) error {
			for i := range topo.KeyRanges {
				if topo.KeyRanges[i].Range.Contains(k) {
					topo.KeyRanges[i].State = st
					return nil
				}
			}
			return errors.New("no keyrange holds the user")
		})
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	start := time.Now()
	frozen := setState(topology.Frozen)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := fleet.WaitApplied(wctx, fx.Consul, service, frozen.Version); err != nil {
		t.Fatal(err)
	}
	t.Logf("from the topology write to every node holding version %d: %v", frozen.Version, time.Since(start))
	// A waiter that cannot ask the node learns it from the registration, published a moment later
	// (a freeze is published after publishFrozenDelay, unless the flip comes first).
	if err := fleet.WaitAppliedWith(wctx, fx.Consul, "", service, frozen.Version, fleet.WaitOptions{RegistrationsOnly: true}); err != nil {
		t.Fatalf("the frozen version never reached the registration: %v", err)
	}
	t.Logf("and to the registration carrying it: %v", time.Since(start))
	held := make(chan error, 1)
	go func() {
		_, err := node.pools.WriteShard(ctx, k, "ap-south", time.Minute)
		held <- err
	}()
	select {
	case err := <-held:
		t.Fatalf("a write to the frozen keyrange was not held by a node that published the version: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	serving := setState(topology.Serving)
	if err := fleet.WaitApplied(wctx, fx.Consul, service, serving.Version); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatalf("the held write after the keyrange served again: %v", err)
	}

	// WaitApplied may have learnt it from the node itself (/topologyz) before the registration
	// carrying it reached Consul: the publication follows.
	var ready struct {
		Topology struct{ Version, Published uint64 }
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		getJSON(t, base+"/readyz", &ready)
		if ready.Topology.Version == serving.Version && ready.Topology.Published == serving.Version {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz topology %+v, want version and published %d", ready.Topology, serving.Version)
		}
	}

	// Three reads of the user's public profile (404: no such user, but routed to its keyrange).
	for range 3 {
		resp, err := client.Get(apiURL + "/api/v1/users/" + user.String() + "/profile")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("profile of an unknown user: %d", resp.StatusCode)
		}
	}
	mf := scrape(t, base)
	if v := gauge(mf, "meridian_api_topology_version"); v != float64(serving.Version) {
		t.Fatalf("meridian_api_topology_version %v, want %d", v, serving.Version)
	}
	if v := gauge(mf, "meridian_api_topology_version_published"); v != float64(serving.Version) {
		t.Fatalf("meridian_api_topology_version_published %v, want %d", v, serving.Version)
	}
	var kr topology.Assignment
	for _, a := range serving.KeyRanges {
		if a.Range.Contains(k) {
			kr = a
		}
	}
	counts := map[string]float64{}
	series := 0
	for _, m := range mf["meridian_api_keyrange_requests_total"].GetMetric() {
		series++
		l := labels(m)
		if l["keyrange"] == kr.Range.String() && l["shard"] == kr.Shard {
			counts[l["kind"]] = m.GetCounter().GetValue()
		}
	}
	// The held write counts once, at the shard it was released to.
	if counts["read"] != 3 || counts["write"] != 1 {
		t.Fatalf("keyrange %s on %s counted %v, want 3 reads and 1 write", kr.Range, kr.Shard, counts)
	}
	want := 0
	for _, sh := range serving.ShardsIn("ap-south") {
		want += 2 * len(serving.RangesOf(sh.Name))
	}
	if series != want {
		t.Fatalf("%d keyrange series, want read and write for each of ap-south's keyranges (%d)", series, want)
	}
	// The planner's view: shardmgr/load finds the node in Consul, scrapes it and sums.
	l, err := load.Collect(ctx, fx.Consul, serving)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Nodes) != 1 || len(l.Failed()) != 0 || l.Nodes[0].Region != "ap-south" || l.Nodes[0].Total() != 4 {
		t.Fatalf("load nodes: %+v", l.Nodes)
	}
	for _, lk := range l.KeyRanges {
		if lk.Range == kr.Range && (lk.Counts != load.Counts{Reads: 3, Writes: 1} || lk.Shard != kr.Shard) {
			t.Fatalf("load of %s: %+v", kr.Range, lk)
		}
	}

	stopWatch()
	<-watched
	if n := notPassing.Load(); n != 0 {
		t.Fatalf("Consul reported the node not passing %d times while it published versions", n)
	}
	stop()
	if nodes, _ := fleet.Nodes(ctx, fx.Consul, service); len(nodes) != 0 {
		t.Fatalf("the node is still in the catalog after it stopped: %+v", nodes)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	out := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			break
		}
		out[mf.GetName()] = &mf
	}
	if len(out) == 0 {
		t.Fatal("no metrics")
	}
	return out
}

func gauge(mf map[string]*dto.MetricFamily, name string) float64 {
	f := mf[name]
	if f == nil || len(f.GetMetric()) != 1 {
		return -1
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}
