package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
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
	"github.com/8thdegree/meridian/migrations"
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
	files, err := fs.Glob(migrations.Files(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	applied := fmt.Sprintf("%d applied now across 6 shards", 6*len(files)) // every migration on every shard
	for _, want := range []string{"topology written to Consul (version 1)", applied, "us-east", "ap-south-1, ap-south-2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up output lacks %q:\n%s", want, out.String())
		}
	}
	// The SRE's way in: the shardmgr token file the summary names.
	shardmgrToken := filepath.Join(cfg.Dir, "consul", "tokens", "shardmgr.token")
	if !strings.Contains(out.String(), "export CONSUL_HTTP_TOKEN_FILE="+shardmgrToken) {
		t.Errorf("up output does not name the shardmgr token file:\n%s", out.String())
	}
	addr := fmt.Sprintf("127.0.0.1:%d", cfg.ConsulHTTPPort)
	client, err := consul.NewClient(&consul.Config{Address: addr, TokenFile: shardmgrToken})
	if err != nil {
		t.Fatal(err)
	}
	// Consul answers no one without a token, and the routers' token cannot rewrite the topology
	// nor pose as a region's API nodes.
	anon, err := consul.NewClient(&consul.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := anon.KV().Get(cfg.TopologyKey, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("anonymous topology read: %v, want 403", err)
	}
	router, err := consul.NewClient(&consul.Config{Address: addr, TokenFile: filepath.Join(cfg.Dir, "consul", "tokens", "router.token")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := router.KV().Put(&consul.KVPair{Key: cfg.TopologyKey, Value: []byte("{}")}, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("router topology write: %v, want 403", err)
	}
	fake := &consul.AgentServiceRegistration{ID: "fake", Name: topo.Regions[0].APIService, Address: "127.0.0.1", Port: 1}
	if err := router.Agent().ServiceRegister(fake); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("router registers %s: %v, want 403", fake.Name, err)
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
	var bruno struct {
		User struct {
			EmailVerified bool `json:"email_verified"`
		} `json:"user"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&bruno); err != nil || !bruno.User.EmailVerified {
		t.Errorf("the demo user is not verified: %+v %v", bruno, err)
	}
	resp.Body.Close()
	// Each demo user was verified through the link mailed to them, one .eml file each.
	mails, err := filepath.Glob(filepath.Join(cfg.MailDir(), "*.eml"))
	if err != nil || len(mails) != 4 {
		t.Errorf("%d mails in %s, want one per demo user: %v", len(mails), cfg.MailDir(), err)
	}
	if tok, err := newestVerifyToken(cfg.MailDir(), "bruno@demo.8thdegree.test"); err != nil || !strings.HasPrefix(tok, "mev_usr_") {
		t.Errorf("bruno's verification mail: %q %v", tok, err)
	}
	// The routers' ops endpoints are on their ops listener, never on the one clients reach.
	for i := range topo.Regions {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", cfg.RouterOpsPort(i)))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("router %d ops /readyz: %v %v", i, resp, err)
		}
		resp.Body.Close()
		for _, p := range []string{"/readyz", "/metrics"} {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", cfg.RouterPort(i), p))
			if err != nil || resp.StatusCode != http.StatusNotFound {
				t.Errorf("router %d public %s: %v %v, want 404", i, p, resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	}

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
	// An API service the routers' Consul policy would not cover.
	topo := topology.Example()
	topo.Regions[1].APIService = "edge-eu-west"
	data, err := topo.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TopologyFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Up(context.Background(), cfg, nil, &out); err == nil || !strings.Contains(err.Error(), `must start with "meridian-api-"`) {
		t.Fatalf("up with a service outside meridian-api-: %v", err)
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
