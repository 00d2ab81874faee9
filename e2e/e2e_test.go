package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/router"
)

// e2e is a deployment of real API nodes (one per region, as cmd/api runs them) with a real edge
// router in every region in front of them.
type e2e struct {
	cluster *cluster.Cluster
	routers map[string]string // region → base URL
	rt      map[string]*router.Router
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real API nodes and routers")
	}
	c := cluster.Start(t)
	e := &e2e{cluster: c, routers: map[string]string{}, rt: map[string]*router.Router{}}
	for _, r := range c.Topology.Regions {
		e.routers[r.Name], e.rt[r.Name] = c.StartRouter(t, r.Name, nil)
	}
	return e
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
}

func (e *e2e) do(t *testing.T, via, method, path, token string, body any) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.routers[via]+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", method, path, via, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return reply{status: resp.StatusCode, header: resp.Header, body: m}
}

// Users of each region reach their region from every router; registration goes to the region the body
// names; a request the node of the caller's region cannot take (verifying the email of a user homed
// elsewhere) is replayed to the right region by the router, and the client sees one answer.
func TestE2EEveryRouterReachesTheHomeRegion(t *testing.T) {
	e := startE2E(t)
	tokens := map[string]string{}
	ids := map[string]string{}
	emails := map[string]string{}
	refresh := map[string]string{}
	for _, region := range []string{"us-east", "eu-west", "ap-south"} {
		role := "freelancer"
		if region == "us-east" {
			role = "client"
		}
		// Registered through another region's router: the body's region decides.
		emails[region] = fmt.Sprintf("%s-%d@e2e.test", region, time.Now().UnixNano())
		r := e.do(t, "ap-south", "POST", "/api/v1/auth/register", "", map[string]any{
			"email": emails[region], "password": "e2e password 0123",
			"name": "E2E " + region, "role": role, "region": region})
		if r.status != http.StatusCreated || r.header.Get("X-Meridian-Region") != region {
			t.Fatalf("register in %s via ap-south: %d %v %v", region, r.status, r.header.Get("X-Meridian-Region"), r.body)
		}
		tokens[region] = r.body["access_token"].(string)
		refresh[region] = r.body["refresh_token"].(string)
		ids[region] = r.body["user"].(map[string]any)["id"].(string)
	}
	// The us-east client verifies their email through the eu-west router (the node there answers 421
	// and the router replays it home) and refreshes through ap-south for a token that carries it.
	vt, err := e.cluster.VerificationToken(emails["us-east"])
	if err != nil {
		t.Fatal(err)
	}
	if v := e.do(t, "eu-west", "POST", "/api/v1/auth/verify-email", "", map[string]any{"token": vt}); v.status != http.StatusNoContent || v.header.Get("X-Meridian-Region") != "us-east" {
		t.Fatalf("verify via eu-west: %d %q %v", v.status, v.header.Get("X-Meridian-Region"), v.body)
	}
	rf := e.do(t, "ap-south", "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": refresh["us-east"]})
	if rf.status != http.StatusOK || rf.body["user"].(map[string]any)["email_verified"] != true {
		t.Fatalf("refresh after verifying: %d %v", rf.status, rf.body)
	}
	tokens["us-east"] = rf.body["access_token"].(string)
	for _, via := range []string{"us-east", "eu-west", "ap-south"} {
		for home, tok := range tokens {
			r := e.do(t, via, "GET", "/api/v1/users/me", tok, nil)
			if r.status != 200 || r.body["id"] != ids[home] || r.header.Get("X-Meridian-Region") != home {
				t.Errorf("me of a %s user via the %s router: %d region %q %v", home, via, r.status, r.header.Get("X-Meridian-Region"), r.body)
			}
			// Public reads by ID route by the ID's ksid.
			r = e.do(t, via, "GET", "/api/v1/users/"+ids[home]+"/profile", "", nil)
			if r.status != 200 || r.header.Get("X-Meridian-Region") != home {
				t.Errorf("public profile of a %s user via %s: %d %q", home, via, r.status, r.header.Get("X-Meridian-Region"))
			}
		}
	}
	// A us-east client's job, posted through the eu-west router, lives in us-east.
	job := e.do(t, "eu-west", "POST", "/api/v1/jobs/", tokens["us-east"], map[string]any{"title": "Replay test", "description": "x", "skills": []string{"go"}, "budget_min": 1, "budget_max": 2, "currency": "USD", "remote": true})
	if job.status != http.StatusCreated || job.header.Get("X-Meridian-Region") != "us-east" {
		t.Fatalf("job: %d %v", job.status, job.body)
	}
	// Login works for a user of any region through any router: the node of the router's region finds
	// the user's home region in the email directory and forwards.
	me := e.do(t, "eu-west", "GET", "/api/v1/users/me", tokens["ap-south"], nil)
	login := e.do(t, "us-east", "POST", "/api/v1/auth/login", "", map[string]any{"email": me.body["email"], "password": "e2e password 0123"})
	if login.status != 200 || login.body["user"].(map[string]any)["region"] != "ap-south" {
		t.Fatalf("login of an ap-south user via us-east: %d %v", login.status, login.body)
	}
	global := e.do(t, "eu-west", "GET", "/api/v1/jobs/search?q=replay&scope=global", "", nil)
	if global.status != 200 || global.body["partial"] != false {
		t.Fatalf("global search: %d %v", global.status, global.body)
	}
}

// A region whose nodes are gone gives its users fast 503 region_unavailable answers, from every router,
// and nobody else notices; the router never serves a user from another region.
func TestE2ERegionDown(t *testing.T) {
	e := startE2E(t)
	reg := func(region string) string {
		r := e.do(t, region, "POST", "/api/v1/auth/register", "", map[string]any{
			"email": fmt.Sprintf("down-%s-%d@e2e.test", region, time.Now().UnixNano()), "password": "e2e password 0123",
			"name": "Down", "role": "freelancer", "region": region})
		if r.status != http.StatusCreated {
			t.Fatalf("register %s: %d %v", region, r.status, r.body)
		}
		return r.body["access_token"].(string)
	}
	apTok, euTok := reg("ap-south"), reg("eu-west")
	e.cluster.StopRegion("ap-south")
	// Once the routers have seen the nodes leave Consul, answers are immediate.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.do(t, "us-east", "GET", "/api/v1/users/me", apTok, nil)
		if r.status == http.StatusServiceUnavailable {
			if code, _ := r.body["error"].(map[string]any)["code"].(string); code != "region_unavailable" || r.header.Get("Retry-After") == "" {
				t.Fatalf("503 without region_unavailable and Retry-After: %v %v", r.body, r.header)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d for a user of a stopped region", r.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var failures atomic.Int32
	var wg sync.WaitGroup
	for _, via := range []string{"us-east", "eu-west"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if r := e.do(t, via, "GET", "/api/v1/users/me", euTok, nil); r.status != 200 {
					failures.Add(1)
				}
				if r := e.do(t, via, "GET", "/api/v1/users/me", apTok, nil); r.status != http.StatusServiceUnavailable {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d answers were not 200 for eu-west's user or 503 for ap-south's", n)
	}
}

// A node that leaves while requests flow costs no failed idempotent request: the router moves to the
// region's other node.
func TestE2ENodeLeavesUnderLoad(t *testing.T) {
	e := startE2E(t)
	e.cluster.StartNode(t, "eu-west")
	e.cluster.WaitPassing(t, "eu-west", 2)
	r := e.do(t, "eu-west", "POST", "/api/v1/auth/register", "", map[string]any{
		"email": fmt.Sprintf("load-%d@e2e.test", time.Now().UnixNano()), "password": "e2e password 0123",
		"name": "Load", "role": "freelancer", "region": "eu-west"})
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %v", r.status, r.body)
	}
	tok := r.body["access_token"].(string)
	// The router follows Consul with blocking queries: wait until it lists both eu-west nodes.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if len(e.rt["us-east"].Nodes("eu-west")) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the us-east router never saw the second eu-west node")
		}
	}
	var failed atomic.Int32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r := e.do(t, "us-east", "GET", "/api/v1/users/me", tok, nil); r.status != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	e.cluster.StopNode("eu-west", 0) // the first node leaves; the second stays
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d GETs failed while a node left", n)
	}
}
