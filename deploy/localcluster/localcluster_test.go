package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
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
	// Three regions' routers and API nodes sit at PortBase+100, +101, +200, ... (below PortBase+400): a
	// base of the process's own, kept under 32768, where Linux's default range of ephemeral ports (the
	// free ports above, and every outgoing connection's) begins, so that no other socket holds one.
	cfg.PortBase = 20000 + (os.Getpid()%120)*100
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
	began := time.Now()
	if err := Up(ctx, cfg, nil, &out); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	t.Logf("up took %s", time.Since(began).Round(time.Second))
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
	users := len(demoAllUsers())
	if !strings.Contains(out.String(), fmt.Sprintf("demo data: %d users created now", users)) ||
		!strings.Contains(out.String(), "demo market: 36 freelancers with profiles and 15 jobs, 12 and 5 in each region") {
		t.Errorf("no demo data:\n%s", out.String())
	}
	login := fmt.Sprintf("http://127.0.0.1:%d/api/v1/auth/login", cfg.RouterPort(0))
	resp, err := demoSend(t, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, login, strings.NewReader(`{"email":"bruno@demo.8thdegree.test","password":"`+DemoPassword+`"}`))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
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
	if err != nil || len(mails) != users {
		t.Errorf("%d mails in %s, want one per demo user: %v", len(mails), cfg.MailDir(), err)
	}
	if tok, err := newestVerifyToken(cfg.MailDir(), "bruno@demo.8thdegree.test"); err != nil || !strings.HasPrefix(tok, "mev_usr_") {
		t.Errorf("bruno's verification mail: %q %v", tok, err)
	}
	checkDemoHiring(t, cfg, &out)
	checkDemoMatching(t, cfg, &out)
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
	if !strings.Contains(out.String(), "topology already in Consul (version 1)") || !strings.Contains(out.String(), "0 applied now") || !strings.Contains(out.String(), "0 users created now") ||
		!strings.Contains(out.String(), "kept from an earlier run, completed; reviews posted now: 0 of 2") {
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

// demoSend sends the request newReq makes, again after each 429 for up to a minute (waiting its
// Retry-After): the seeding has just spent most of the nodes' budget for anonymous requests from this
// address, which refills within seconds.
func demoSend(t *testing.T, newReq func() (*http.Request, error)) (*http.Response, error) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		req, err := newReq()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			return resp, err
		}
		resp.Body.Close()
		time.Sleep(retryAfter(resp.Header.Get("Retry-After")))
	}
}

// demoGet GETs path through router i of cfg as token's owner ("" for none) into out; it returns the status.
func demoGet(t *testing.T, cfg Config, i int, path, token string, out any) int {
	t.Helper()
	resp, err := demoSend(t, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", cfg.RouterPort(i), path), nil)
		if err == nil && token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req, err
	})
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// demoLogin logs email in through router i and returns the access token and the user's ID.
func demoLogin(t *testing.T, cfg Config, i int, email string) (token, id string) {
	t.Helper()
	resp, err := demoSend(t, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/api/v1/auth/login", cfg.RouterPort(i)),
			strings.NewReader(`{"email":"`+email+`","password":"`+DemoPassword+`"}`))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %v %v", email, resp, err)
	}
	defer resp.Body.Close()
	var b demoBundle
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || b.AccessToken == "" {
		t.Fatalf("login %s: %+v %v", email, b, err)
	}
	return b.AccessToken, b.User.ID
}

// checkDemoHiring checks the demo's hiring through the routers: Alice's completed contract with Bruno,
// seen from both sides, the two verified reviews bound to it, and Chitra's pending proposal.
func checkDemoHiring(t *testing.T, cfg Config, out *bytes.Buffer) {
	t.Helper()
	if !strings.Contains(out.String(), "created now, completed; reviews posted now: 2 of 2") {
		t.Errorf("no demo hiring in the output:\n%s", out.String())
	}
	alice, aliceID := demoLogin(t, cfg, 0, "alice@demo.8thdegree.test")
	bruno, brunoID := demoLogin(t, cfg, 1, "bruno@demo.8thdegree.test")
	_, chitraID := demoLogin(t, cfg, 2, "chitra@demo.8thdegree.test")
	var contracts struct {
		Items []demoContract `json:"items"`
	}
	// Alice's contracts through the ap-south router: the router sends her requests to us-east.
	if code := demoGet(t, cfg, 2, "/api/v1/contracts/?status=completed", alice, &contracts); code != http.StatusOK || len(contracts.Items) != 1 {
		t.Fatalf("alice's completed contracts: %d %+v", code, contracts)
	}
	ct := contracts.Items[0]
	if ct.FreelancerID != brunoID || ct.Status != "completed" || !strings.Contains(out.String(), "demo hiring: contract "+ct.ID) {
		t.Errorf("alice's contract %+v (bruno is %s)", ct, brunoID)
	}
	// Bruno's side: the reference row on his shard, and the contract itself read in Alice's region.
	var mine struct {
		Items []demoContract `json:"items"`
	}
	if code := demoGet(t, cfg, 0, "/api/v1/contracts/", bruno, &mine); code != http.StatusOK || len(mine.Items) != 1 || mine.Items[0].ID != ct.ID || mine.Items[0].Status != "completed" {
		t.Errorf("bruno's contracts: %d %+v, want %s completed", code, mine, ct.ID)
	}
	var read demoContract
	if code := demoGet(t, cfg, 1, "/api/v1/contracts/"+ct.ID, bruno, &read); code != http.StatusOK || read.ID != ct.ID || read.Status != "completed" {
		t.Errorf("bruno reads %s: %d %+v", ct.ID, code, read)
	}
	// Bruno's proposal, read by Alice with its cover letter (in eu-west), is accepted.
	var p struct {
		demoProposal
		CoverLetter string `json:"cover_letter"`
	}
	if code := demoGet(t, cfg, 0, "/api/v1/proposals/"+ct.ProposalID, alice, &p); code != http.StatusOK || p.Status != "accepted" || p.CoverLetter == "" {
		t.Errorf("alice reads bruno's proposal %s: %d %+v", ct.ProposalID, code, p)
	}
	// The two reviews, one on each party's shard, bound to the contract and counted in the stats.
	for _, who := range []struct{ name, id, reviewer string }{{"bruno", brunoID, aliceID}, {"alice", aliceID, brunoID}} {
		var stats struct {
			Count   int     `json:"count"`
			Average float64 `json:"average"`
		}
		if code := demoGet(t, cfg, 0, "/api/v1/reviews/stats?user_id="+who.id, "", &stats); code != http.StatusOK || stats.Count != 1 || stats.Average != 5 {
			t.Errorf("%s's review stats: %d %+v, want one verified 5", who.name, code, stats)
		}
		var reviews struct {
			Items []struct {
				ContractID string `json:"contract_id"`
				ReviewerID string `json:"reviewer_id"`
			} `json:"items"`
		}
		if code := demoGet(t, cfg, 0, "/api/v1/reviews/?user_id="+who.id, "", &reviews); code != http.StatusOK || len(reviews.Items) != 1 ||
			reviews.Items[0].ContractID != ct.ID || reviews.Items[0].ReviewerID != who.reviewer {
			t.Errorf("%s's reviews: %d %+v, want one by %s on %s", who.name, code, reviews, who.reviewer, ct.ID)
		}
	}
	// Chitra's proposal reaches the React job's owner through the outbox, and stays pending.
	var jobs struct {
		Items []struct{ ID, Title string } `json:"items"`
	}
	if code := demoGet(t, cfg, 0, "/api/v1/jobs/", alice, &jobs); code != http.StatusOK {
		t.Fatalf("alice's jobs: %d", code)
	}
	react := ""
	for _, j := range jobs.Items {
		if j.Title == demoReactJob {
			react = j.ID
		}
	}
	var refs struct {
		Items []struct {
			FreelancerID string `json:"freelancer_id"`
			Status       string `json:"status"`
		} `json:"items"`
	}
	for deadline := time.Now().Add(demoOutboxWait); ; time.Sleep(demoOutboxPoll) {
		code := demoGet(t, cfg, 0, "/api/v1/jobs/"+react+"/proposals", alice, &refs)
		if code == http.StatusOK && len(refs.Items) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the React job's proposals: %d %+v", code, refs)
		}
	}
	if refs.Items[0].FreelancerID != chitraID || refs.Items[0].Status != "pending" {
		t.Errorf("the React job's proposal: %+v, want chitra's (%s) pending", refs.Items[0], chitraID)
	}
}

// demoMatch is the part of a matching list the test reads.
type demoMatch struct {
	ListID string `json:"list_id"`
	Items  []struct {
		FreelancerID string  `json:"freelancer_id"`
		JobID        string  `json:"job_id"`
		Region       string  `json:"region"`
		Score        float64 `json:"score"`
		Reasons      []struct {
			Signal       string  `json:"signal"`
			Contribution float64 `json:"contribution"`
			Text         string  `json:"text"`
		} `json:"reasons"`
	} `json:"items"`
	Fairness map[string]any `json:"fairness"`
}

// demoMatching polls path through router i as token's owner until the list satisfies ok, for at most
// 30 s: the demo's profiles and jobs are embedded through the outbox and indexed moments after seeding.
func demoMatching(t *testing.T, cfg Config, i int, path, token, what string, ok func(demoMatch) bool) demoMatch {
	t.Helper()
	var m demoMatch
	code := 0
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		m = demoMatch{}
		if code = demoGet(t, cfg, i, path, token, &m); code == http.StatusOK && ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %+v", what, code, m)
		}
	}
}

// checkDemoMatching checks that the demo data gives the matching engine something to rank, through
// the routers: explained lists of freelancers for Alice's sharding job, in her region and across
// regions (where Bruno, of eu-west, shows up), and of open jobs for Bruno; and that the summary shows
// how to ask for them.
func checkDemoMatching(t *testing.T, cfg Config, out *bytes.Buffer) {
	t.Helper()
	alice, _ := demoLogin(t, cfg, 0, "alice@demo.8thdegree.test")
	bruno, brunoID := demoLogin(t, cfg, 1, "bruno@demo.8thdegree.test")
	var jobs struct {
		Items []struct{ ID, Title string } `json:"items"`
	}
	if code := demoGet(t, cfg, 0, "/api/v1/jobs/", alice, &jobs); code != http.StatusOK {
		t.Fatalf("alice's jobs: %d", code)
	}
	sharding := ""
	for _, j := range jobs.Items {
		if j.Title == demoShardingJob {
			sharding = j.ID
		}
	}
	for _, want := range []string{"/api/v1/jobs/matching?job_id=" + sharding + `" -H`, "/api/v1/jobs/matching?job_id=" + sharding + "&scope=global",
		`"$R/api/v1/jobs/matching" -H "Authorization: Bearer $TOKEN"`} {
		if sharding == "" || !strings.Contains(out.String(), want) {
			t.Errorf("the summary does not show %q:\n%s", want, out.String())
		}
	}
	// Alice's region's freelancers, asked through the eu-west router: several, each score explained
	// by its signals' contributions.
	local := demoMatching(t, cfg, 1, "/api/v1/jobs/matching?job_id="+sharding, alice, "freelancers for alice's sharding job",
		func(m demoMatch) bool { return len(m.Items) >= 3 })
	if local.ListID == "" || local.Fairness["exposure"] == nil {
		t.Errorf("the list has no list_id or fairness: %+v", local)
	}
	for _, it := range local.Items {
		sum := 0.0
		for _, r := range it.Reasons {
			sum += r.Contribution
			if r.Signal == "" || r.Text == "" {
				t.Errorf("a reason without signal or text: %+v", it)
			}
		}
		if it.FreelancerID == "" || it.Region != "us-east" || len(it.Reasons) == 0 || math.Abs(sum-it.Score) > 1e-9 {
			t.Errorf("freelancer for a us-east job in its region: %+v (contributions add up to %v)", it, sum)
		}
	}
	// Across regions every region ranks its own: Bruno, whose skills are the job's, is among them.
	demoMatching(t, cfg, 2, "/api/v1/jobs/matching?scope=global&limit=50&job_id="+sharding, alice, "a global list with bruno",
		func(m demoMatch) bool {
			for _, it := range m.Items {
				if it.FreelancerID == brunoID && it.Region == "eu-west" && len(it.Reasons) > 0 {
					return true
				}
			}
			return false
		})
	// The other direction: open jobs of eu-west for Bruno.
	demoMatching(t, cfg, 0, "/api/v1/jobs/matching", bruno, "jobs for bruno", func(m demoMatch) bool {
		return len(m.Items) > 0 && m.Items[0].JobID != "" && m.Items[0].Region == "eu-west" && len(m.Items[0].Reasons) > 0
	})
}
