package router_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/8thdegree/meridian/router"
	"github.com/8thdegree/meridian/router/routertest"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// A user is relocated from eu-west to ap-south. The nodes already route by the new topology, the
// router still by the old one: the eu-west node answers 421 with a hint, the router replays in
// ap-south, and the client sees one answer. Then the router catches up and goes straight there.
func TestStaleTopologyIsCorrectedByReplay(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	u := env.User(t, "eu-west")
	moved := u.KSID.WithRegion(env.RegionCode(t, "ap-south"))

	next := env.Topology()
	next.Relocations = append(next.Relocations, topology.Relocation{From: u.KSID, To: moved})
	tab, err := topology.Compile(next)
	if err != nil {
		t.Fatal(err)
	}
	for _, region := range routertest.Regions {
		for _, n := range env.Nodes(region) {
			n.SetTable(tab)
		}
	}

	a := do(t, r, call{method: http.MethodPut, path: "/api/v1/users/profile", token: u.Token, body: `{"headline":"moved"}`})
	s := mustEcho(t, a, "ap-south")
	if s.Body != `{"headline":"moved"}` {
		t.Errorf("the replayed body reached the node as %q", s.Body)
	}
	if got := s.Header.Get("X-Meridian-Replayed-From"); got != "eu-west" {
		t.Errorf("replayed request carries X-Meridian-Replayed-From %q, want eu-west", got)
	}
	eu, ap := env.Nodes("eu-west")[0], env.Nodes("ap-south")[0]
	if eu.Hits() != 1 || ap.Hits() != 1 {
		t.Fatalf("hits: eu-west %d, ap-south %d; want one each", eu.Hits(), ap.Hits())
	}
	if a.header.Get("X-Meridian-Replay-Region") != "" {
		t.Errorf("the replay hint leaked to the client")
	}
	if log := r.AccessLog(a.header.Get("X-Request-ID")); log == nil || log["replayed_from"] != "eu-west" || log["region"] != "ap-south" {
		t.Errorf("access log: %v", log)
	}

	// The topology catches up: no more replays.
	env.Modify(t, func(tp *topology.Topology) error {
		tp.Relocations = append(tp.Relocations, topology.Relocation{From: u.KSID, To: moved})
		return nil
	})
	waitFor(t, "the router to take the new topology", func() bool { return r.TopologyVersion() == 2 })
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "ap-south")
	if eu.Hits() != 1 {
		t.Errorf("eu-west was asked again after the router caught up")
	}
}

// Two nodes that disagree (each names the other) never make the router replay twice.
func TestNoDoubleReplay(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	r := env.StartRouter(t, "us-east", nil)
	u := env.User(t, "eu-west")
	toAP, toEU := env.Topology(), env.Topology()
	toAP.Relocations = []topology.Relocation{{From: u.KSID, To: u.KSID.WithRegion(env.RegionCode(t, "ap-south"))}}
	// ap-south believes the user lives in eu-west (its own copy has no relocation).
	tabAP, _ := topology.Compile(toAP)
	tabEU, _ := topology.Compile(toEU)
	env.Nodes("eu-west")[0].SetTable(tabAP)
	env.Nodes("ap-south")[0].SetTable(tabEU)

	a := do(t, r, call{path: "/api/v1/users/me", token: u.Token})
	if a.status != http.StatusServiceUnavailable || a.errorCode(t) != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %s, want 503 unavailable with Retry-After", a.status, a.body)
	}
	if eu, ap := env.TotalHits("eu-west"), env.TotalHits("ap-south"); eu != 1 || ap != 1 {
		t.Fatalf("hits: eu-west %d, ap-south %d; want one each (one replay, never two)", eu, ap)
	}
}

// A node killed without Consul knowing is ejected, and no idempotent request fails on the way.
func TestKilledNodeIsEjectedWithoutFailedRequests(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 3})
	r := env.StartRouter(t, "us-east", nil)
	u := env.User(t, "eu-west")
	nodes := env.Nodes("eu-west")
	for range 6 {
		mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "eu-west")
	}
	dead := nodes[0]
	dead.Kill()
	before := map[*routertest.Node]int{}
	for _, n := range nodes {
		before[n] = n.Hits()
	}
	for i := range 30 {
		method := http.MethodGet
		if i%3 == 1 {
			method = http.MethodDelete
		}
		a := do(t, r, call{method: method, path: "/api/v1/users/me", token: u.Token})
		mustEcho(t, a, "eu-west")
	}
	// A POST that meets the dead node fails to connect, so it is safe to send elsewhere too.
	for range 10 {
		mustEcho(t, do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs/", token: u.Token, body: `{"title":"t"}`}), "eu-west")
	}
	served := 0
	for _, n := range nodes[1:] {
		served += n.Hits() - before[n]
	}
	if served != 40 {
		t.Errorf("the live nodes served %d of 40 requests", served)
	}
	m := opsGet(t, r, "/metrics")
	if !strings.Contains(string(m.body), `meridian_router_nodes{region="eu-west",state="ejected"} 1`) {
		t.Errorf("the dead node is not reported ejected:\n%s", grep(string(m.body), "meridian_router_nodes"))
	}
}

// A region whose nodes are all down answers its users 503 region_unavailable at once, without trying
// a node, and never from another region; the other regions' users notice nothing.
func TestRegionDown(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 2})
	r := env.StartRouter(t, "us-east", nil)
	euUser, apUser := env.User(t, "eu-west"), env.User(t, "ap-south")

	t.Run("consul knows", func(t *testing.T) {
		for _, n := range env.Nodes("ap-south") {
			n.Fail(t)
		}
		waitFor(t, "the router to see ap-south's nodes fail", func() bool { return len(r.Nodes("ap-south")) == 0 })
		hitsBefore := env.TotalHits("ap-south")
		for range 5 {
			a := do(t, r, call{path: "/api/v1/users/me", token: apUser.Token})
			assertRegionDown(t, r, a, "ap-south")
			mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: euUser.Token}), "eu-west")
		}
		if env.TotalHits("ap-south") != hitsBefore {
			t.Errorf("a request reached a failed ap-south node")
		}
		for _, n := range env.Nodes("ap-south") {
			n.Pass(t)
		}
		waitFor(t, "ap-south to come back", func() bool { return len(r.Nodes("ap-south")) == 2 })
		mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: apUser.Token}), "ap-south")
	})

	t.Run("killed without consul knowing", func(t *testing.T) {
		for _, n := range env.Nodes("eu-west") {
			n.Kill()
		}
		// The first request finds both nodes refusing connections and ejects them.
		a := do(t, r, call{path: "/api/v1/users/me", token: euUser.Token})
		if a.status != http.StatusServiceUnavailable || a.errorCode(t) != "region_unavailable" {
			t.Fatalf("got %d %s, want 503 region_unavailable", a.status, a.body)
		}
		// Then the region is known down: no attempt at all.
		for range 5 {
			assertRegionDown(t, r, do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs/", token: euUser.Token, body: `{}`}), "eu-west")
			mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: apUser.Token}), "ap-south")
		}
	})
}

func assertRegionDown(t *testing.T, r *routertest.Router, a answer, region string) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.errorCode(t) != "region_unavailable" {
		t.Fatalf("got %d %s, want 503 region_unavailable", a.status, a.body)
	}
	if a.header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After")
	}
	if got := a.header.Get("X-Meridian-Region"); got != r.Region {
		t.Errorf("X-Meridian-Region %q on the router's own answer, want %q", got, r.Region)
	}
	log := r.AccessLog(a.header.Get("X-Request-ID"))
	if log == nil || log["attempts"] != float64(0) || log["region"] != region {
		t.Errorf("access log %v: want no attempt, region %s", log, region)
	}
}

// Failures of a node map to the contract: a node that answers 503 is retried elsewhere for idempotent
// requests; a broken connection is retried for idempotent requests and a 502 otherwise; a node that
// does not answer in time is a 504; a client that leaves is logged as 499.
func TestUpstreamFailures(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 2})
	r := env.StartRouter(t, "us-east", func(c *router.Config) {
		c.UpstreamTimeout = 300 * time.Millisecond
		c.BreakerFailures = 100 // keep the breaker out of this test's way
	})
	u := env.User(t, "eu-west")
	sick, well := env.Nodes("eu-west")[0], env.Nodes("eu-west")[1]

	t.Run("503 is retried on another node for GET, passed through for POST", func(t *testing.T) {
		sick.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"busy","request_id":"` + r.Header.Get("X-Request-ID") + `"}}`))
		}))
		defer sick.SetHandler(sick.Echo())
		for range 8 {
			mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "eu-west")
		}
		sawNode503 := false
		for range 12 {
			a := do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs/", token: u.Token, body: `{}`})
			switch a.status {
			case http.StatusOK:
			case http.StatusServiceUnavailable:
				if a.errorCode(t) != "unavailable" || a.header.Get("X-Meridian-Region") != "eu-west" {
					t.Errorf("POST: %d %s", a.status, a.body)
				}
				sawNode503 = true
			default:
				t.Errorf("POST: %d %s", a.status, a.body)
			}
		}
		if !sawNode503 {
			t.Errorf("no POST met the sick node in 12 tries")
		}
	})

	t.Run("broken connection", func(t *testing.T) {
		sick.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}))
		defer sick.SetHandler(sick.Echo())
		// POSTs first: a few broken connections eject the node, and then nothing meets it any more.
		saw502 := false
		for range 12 {
			a := do(t, r, call{method: http.MethodPost, path: "/api/v1/jobs/", token: u.Token, body: `{}`})
			switch {
			case a.status == http.StatusOK:
			case a.status == http.StatusBadGateway && a.errorCode(t) == "bad_gateway":
				saw502 = true
			default:
				t.Errorf("POST: %d %s", a.status, a.body)
			}
			if saw502 {
				break
			}
		}
		if !saw502 {
			t.Errorf("no POST met the broken node")
		}
		for range 6 {
			mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: u.Token}), "eu-west")
		}
	})

	t.Run("timeout", func(t *testing.T) {
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		})
		sick.SetHandler(slow)
		well.SetHandler(slow)
		defer sick.SetHandler(sick.Echo())
		defer well.SetHandler(well.Echo())
		a := do(t, r, call{path: "/api/v1/users/me", token: u.Token})
		if a.status != http.StatusGatewayTimeout || a.errorCode(t) != "gateway_timeout" {
			t.Fatalf("got %d %s, want 504 gateway_timeout", a.status, a.body)
		}
	})

	t.Run("client gone", func(t *testing.T) {
		started := make(chan struct{}, 2)
		hold := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			<-r.Context().Done()
		})
		sick.SetHandler(hold)
		well.SetHandler(hold)
		defer sick.SetHandler(sick.Echo())
		defer well.SetHandler(well.Echo())
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/api/v1/users/me", nil)
		req.Header.Set("Authorization", "Bearer "+u.Token)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		<-started
		cancel()
		wg.Wait()
		waitFor(t, "the 499 in the access log", func() bool { return strings.Contains(r.Logs(), `"status":499`) })
	})
}

// waitFor polls cond (every 10 ms, up to 20 s): for what Consul and watches deliver asynchronously.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A node certificate of another region at an address Consul lists for a region (a wrong
// registration, or an impostor holding some node's key) is refused at the handshake: the router tries
// the region's real nodes, and with none left answers as for a region whose nodes fail, never sending
// the request to the impostor.
func TestNodeOfAnotherRegionIsRefused(t *testing.T) {
	env := routertest.New(t, routertest.Options{NodesPerRegion: 1})
	impostor := env.StartNodeAs(t, "eu-west", "us-east")
	r := env.StartRouter(t, "us-east", nil)
	euUser, usUser := env.User(t, "eu-west"), env.User(t, "us-east")
	waitFor(t, "the router to see both eu-west nodes", func() bool { return len(r.Nodes("eu-west")) == 2 })

	for range 10 {
		s := mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: euUser.Token}), "eu-west")
		if s.Node == impostor.ID {
			t.Fatal("the router sent a request to a us-east node at an eu-west address")
		}
		mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: usUser.Token}), "us-east")
	}

	// Only the impostor left in eu-west: the request fails, the router's way, and is not delivered.
	for _, n := range env.Nodes("eu-west") {
		if n.ID != impostor.ID {
			n.Fail(t)
		}
	}
	waitFor(t, "the router to see eu-west's real node fail", func() bool { return len(r.Nodes("eu-west")) == 1 })
	for _, c := range []call{
		{path: "/api/v1/users/me", token: euUser.Token},
		{method: http.MethodPost, path: "/api/v1/jobs/", token: euUser.Token, body: `{}`},
	} {
		a := do(t, r, c)
		if a.status != http.StatusBadGateway && a.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with only an impostor in eu-west: %d %s, want 502 or 503", c.method, c.path, a.status, a.body)
		}
	}
	if impostor.Hits() != 0 {
		t.Errorf("the impostor received %d requests", impostor.Hits())
	}
	// us-east's own node still serves.
	mustEcho(t, do(t, r, call{path: "/api/v1/users/me", token: usUser.Token}), "us-east")
}
