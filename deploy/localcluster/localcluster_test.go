package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/mtls"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func freePort(t *testing.T) int {
	t.Helper()
	p, err := local.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testConfig places a whole cluster on free ports under a temporary folder, so the test neither needs
// nor disturbs a cluster a developer runs on the default ports.
func testConfig(t *testing.T) (Config, *topology.Topology) {
	t.Helper()
	topo := topology.Example()
	pgPorts := map[string]int{}
	for i := range topo.Regions {
		topo.Regions[i].RedisAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		pgPorts[topo.Regions[i].Name] = freePort(t)
	}
	for i := range topo.Shards {
		topo.Shards[i].Conn.Port = pgPorts[topo.Shards[i].Region]
	}
	data, err := topo.Encode()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "topology.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(filepath.Join(dir, "cluster"))
	cfg.TopologyFile = file
	cfg.RepoDir = filepath.Join("..", "..")
	cfg.ConsulHTTPPort, cfg.ConsulServerPort, cfg.ConsulSerfPort = freePort(t), freePort(t), freePort(t)
	cfg.NodesPerRegion = 1
	// Three regions' routers and API nodes sit at PortBase+100, +101, +200, ...: a base of the process's own.
	cfg.PortBase = 20000 + (os.Getpid()%200)*100
	return cfg, topo
}

func TestUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster")
	}
	testenv.Postgres(t) // makes sure the PostgreSQL folder permissions are set up as for the harness
	cfg, topo := testConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = Down(context.Background(), cfg, nil, &bytes.Buffer{}) })

	var out bytes.Buffer
	if err := Up(ctx, cfg, nil, &out); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	for _, want := range []string{"topology written to Consul (version 1)", "24 applied now across 6 shards", "us-east", "ap-south-1, ap-south-2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up output lacks %q:\n%s", want, out.String())
		}
	}
	ccfg := consul.DefaultConfig()
	ccfg.Address = fmt.Sprintf("127.0.0.1:%d", cfg.ConsulHTTPPort)
	client, err := consul.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := topostore.NewStore(client, cfg.TopologyKey).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Regions) != 3 || len(got.Shards) != 6 {
		t.Fatalf("topology in Consul: %d regions, %d shards", len(got.Regions), len(got.Shards))
	}
	// Every API node answers on its operations listener, and is registered and passing in Consul; its
	// API answers only mutual TLS with a certificate of the cluster's CA.
	for i, r := range topo.Regions {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", cfg.PortBase+100*(i+1)+opsPortOffset+1)
		resp, err := http.Get(url)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", url, resp, err)
		}
		resp.Body.Close()
		// The health check runs every second; a new node is critical until it first passes.
		var entries []*consul.ServiceEntry
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if entries, _, err = client.Health().Service(r.APIService, "", true, nil); err == nil && len(entries) == 1 {
				break
			}
		}
		if len(entries) != 1 {
			t.Errorf("%s in Consul: %d passing, %v", r.APIService, len(entries), err)
		}
		api := fmt.Sprintf("https://127.0.0.1:%d/api/v1/auth/jwks.json", cfg.PortBase+100*(i+1)+1)
		src, err := mtls.Load(cfg.pki().Files(routerName(r.Name)), mtls.Options{})
		if err != nil {
			t.Fatal(err)
		}
		mc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: src.ClientConfig(mtls.NodesOnly)}}
		if resp, err := mc.Get(api); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s with the router's certificate: %v %v", api, resp, err)
		} else {
			resp.Body.Close()
		}
		if resp, err := http.Get(strings.Replace(api, "https", "http", 1)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Errorf("%s answered plain HTTP", api)
			}
		}
	}

	// The demo data went in through the routers; a demo user of eu-west logs in through the us-east
	// router and is served by eu-west.
	if !strings.Contains(out.String(), "demo data: 4 users created now") {
		t.Errorf("no demo data:\n%s", out.String())
	}
	login := fmt.Sprintf("http://127.0.0.1:%d/api/v1/auth/login", cfg.RouterPort(0))
	resp, err := http.Post(login, "application/json", strings.NewReader(`{"email":"bruno@demo.8thdegree.test","password":"`+DemoPassword+`"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login through the us-east router: %v %v", resp, err)
	}
	resp.Body.Close()

	// Starting again reuses everything and keeps the topology.
	out.Reset()
	if err := Up(ctx, cfg, nil, &out); err != nil {
		t.Fatalf("second up: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "topology already in Consul (version 1)") || !strings.Contains(out.String(), "0 applied now") || !strings.Contains(out.String(), "0 users created now") {
		t.Errorf("second up did not reuse the cluster:\n%s", out.String())
	}

	out.Reset()
	if err := Down(ctx, cfg, nil, &out); err != nil {
		t.Fatalf("down: %v", err)
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status/leader", cfg.ConsulHTTPPort)); err == nil {
		t.Error("Consul still answers after down")
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", cfg.PortBase+100+opsPortOffset+1)); err == nil {
		t.Error("an API node still answers after down")
	}
	if err := Down(ctx, cfg, nil, &out); err != nil {
		t.Fatalf("second down: %v", err)
	}
}

func TestUpRefusesABadTopologyAndStartsNothing(t *testing.T) {
	cfg, _ := testConfig(t)
	if err := os.WriteFile(cfg.TopologyFile, []byte(`{"regions": [], "shards": [], "keyranges": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Up(context.Background(), cfg, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "at least one region") {
		t.Fatalf("up with a bad topology: %v", err)
	}
	if _, statErr := os.Stat(cfg.Dir); !os.IsNotExist(statErr) {
		t.Fatalf("up created %s although the topology was refused", cfg.Dir)
	}
	bad := cfg
	bad.NodesPerRegion = 0
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "NodesPerRegion") {
		t.Fatalf("Validate: %v", err)
	}
}

// Programs run in their own folders, so a relative --dir (the default, .local-cluster) must become
// absolute before any path is handed to them.
func TestResolvedMakesDirAbsolute(t *testing.T) {
	cfg := DefaultConfig(".local-cluster")
	got, err := cfg.resolved()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if got.Dir != filepath.Join(wd, ".local-cluster") {
		t.Fatalf("Dir = %s", got.Dir)
	}
	if p := got.apiProcess(apiNode{region: "us-east", index: 1, port: 1}, "c").Bin; !filepath.IsAbs(p) {
		t.Fatalf("API node binary %s is relative", p)
	}
}
