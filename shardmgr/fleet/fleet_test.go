package fleet

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
	"sync/atomic"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestNotAppliedError(t *testing.T) {
	err := error(&NotAppliedError{Service: "s", Version: 7, Lagging: []Node{{ID: "n1/a", Version: 6}, {ID: "n1/b"}},
		Err: context.DeadlineExceeded, Consul: errors.New("connection refused")})
	if !errors.Is(err, ErrNotApplied) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v does not wrap ErrNotApplied and the context's error", err)
	}
	for _, want := range []string{"version 7", "n1/a at 6", "n1/b at 0", "connection refused", "deadline"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

func TestBackoffBounded(t *testing.T) {
	for attempt := 1; attempt < 40; attempt++ {
		if d := backoff(attempt); d <= 0 || d > 2*time.Second {
			t.Fatalf("attempt %d: %v", attempt, d)
		}
	}
}

// countingTransport counts the requests a Consul client sends.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// env is a test's view of the shared Consul agent: a service name of its own and a client whose
// requests are counted.
type env struct {
	t *testing.T
	// c is shardmgr's client (the one fleet's functions get), node the fake nodes'.
	c       *consul.Client
	node    *consul.Client
	service string
	calls   *countingTransport
}

func newEnv(t *testing.T) *env {
	t.Helper()
	agent := testenv.Consul(t)
	calls := &countingTransport{}
	token, err := agent.Token(local.RoleShardmgr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := consul.NewClient(&consul.Config{Address: agent.HTTPAddr(), Token: token, HttpClient: &http.Client{Transport: calls}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, c: c, node: testenv.ConsulClient(t, agent, local.RoleNode), service: fmt.Sprintf("fleet-test-%08x", rand.Uint32()), calls: calls}
}

// register registers (or registers again) a fake node with a TTL check in status, publishing version
// (none when version is "").
func (e *env) register(id, version, status string) {
	e.t.Helper()
	meta := map[string]string{}
	if version != "" {
		meta[VersionMeta] = version
	}
	reg := &consul.AgentServiceRegistration{ID: e.service + "-" + id, Name: e.service, Address: "127.0.0.1", Port: 9000 + len(id),
		Meta: meta, Check: &consul.AgentServiceCheck{CheckID: e.service + "-" + id + "-ttl", TTL: "1h", Status: status}}
	if err := e.node.Agent().ServiceRegister(reg); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = e.node.Agent().ServiceDeregister(reg.ID) })
}

func (e *env) setStatus(id, status string) {
	e.t.Helper()
	if err := e.node.Agent().UpdateTTL(e.service+"-"+id+"-ttl", "", status); err != nil {
		e.t.Fatal(err)
	}
}

func TestNodes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if nodes, err := Nodes(ctx, e.c, e.service); err != nil || len(nodes) != 0 {
		t.Fatalf("unknown service: %v, %v", nodes, err)
	}
	e.register("a", "12", consul.HealthPassing)
	e.register("b", "11", consul.HealthCritical)
	e.register("c", "", consul.HealthPassing)
	e.register("d", "not-a-version", consul.HealthWarning)
	nodes, err := Nodes(ctx, e.c, e.service)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range nodes {
		id := n.ID[strings.LastIndex(n.ID, "-")+1:]
		got[id] = fmt.Sprintf("%v@%d", n.Passing, n.Version)
		if !strings.Contains(n.ID, "/"+e.service) || !strings.HasPrefix(n.Address, "127.0.0.1:") {
			t.Errorf("node %+v: ID or address", n)
		}
	}
	want := map[string]string{"a": "true@12", "b": "false@11", "c": "true@0", "d": "false@0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("nodes %v, want %v", got, want)
	}
	if _, err := NodesIn(ctx, e.c, "no-such-dc", e.service); err == nil {
		t.Fatal("an unknown datacenter answered")
	}
}

func TestWaitApplied(t *testing.T) {
	t.Run("no node", func(t *testing.T) {
		e := newEnv(t)
		if err := WaitApplied(context.Background(), e.c, e.service, 5); err != nil {
			t.Fatalf("a region without passing nodes has nobody to hold writes: want done, got %v", err)
		}
		e.register("down", "1", consul.HealthCritical)
		if err := WaitApplied(context.Background(), e.c, e.service, 5); err != nil {
			t.Fatalf("only a critical node: %v", err)
		}
	})

	t.Run("already applied", func(t *testing.T) {
		e := newEnv(t)
		e.register("a", "5", consul.HealthPassing)
		e.register("b", "6", consul.HealthPassing)
		e.register("old-but-down", "2", consul.HealthCritical)
		if err := WaitApplied(context.Background(), e.c, e.service, 5); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("waits for the last node, without polling", func(t *testing.T) {
		e := newEnv(t)
		e.register("a", "5", consul.HealthPassing)
		e.register("b", "4", consul.HealthPassing)
		e.register("c", "", consul.HealthPassing) // publishes nothing: unknown is not applied
		done := make(chan error, 1)
		before := e.calls.n.Load()
		go func() { done <- WaitApplied(context.Background(), e.c, e.service, 5) }()
		step := func(what string, f func()) {
			t.Helper()
			select {
			case err := <-done:
				t.Fatalf("returned (%v) before %s", err, what)
			case <-time.After(300 * time.Millisecond):
			}
			f()
		}
		step("b published 5", func() { e.register("b", "5", consul.HealthPassing) })
		step("c published", func() { e.register("c", "7", consul.HealthPassing) })
		start := time.Now()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("WaitApplied returned %v after the last node published", time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatal("WaitApplied did not return after every node published")
		}
		// 600ms of waiting and two changes: a poller would have asked many times; blocking queries ask
		// once per change (and Consul may wake a query once more for a check's update).
		if n := e.calls.n.Load() - before; n > 8 {
			t.Fatalf("WaitApplied sent %d requests to Consul", n)
		}
	})

	t.Run("a node that stops passing is ignored", func(t *testing.T) {
		e := newEnv(t)
		e.register("a", "9", consul.HealthPassing)
		e.register("b", "8", consul.HealthPassing)
		done := make(chan error, 1)
		go func() { done <- WaitApplied(context.Background(), e.c, e.service, 9) }()
		time.Sleep(200 * time.Millisecond)
		e.setStatus("b", consul.HealthCritical)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("WaitApplied waited for a node that is not passing")
		}
	})

	t.Run("bounded by ctx", func(t *testing.T) {
		e := newEnv(t)
		e.register("a", "9", consul.HealthPassing)
		e.register("b", "3", consul.HealthPassing)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := WaitApplied(ctx, e.c, e.service, 9)
		var na *NotAppliedError
		if !errors.As(err, &na) || !errors.Is(err, ErrNotApplied) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want a NotAppliedError past the deadline, got %v", err)
		}
		if len(na.Lagging) != 1 || !strings.HasSuffix(na.Lagging[0].ID, "-b") || na.Lagging[0].Version != 3 {
			t.Fatalf("lagging %+v, want b at 3", na.Lagging)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("WaitApplied outlived its context by %v", d)
		}
	})

	t.Run("consul away", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close() // nothing listens there now
		c, err := consul.NewClient(&consul.Config{Address: addr})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		err = WaitApplied(ctx, c, "any", 1)
		var na *NotAppliedError
		if !errors.As(err, &na) || na.Consul == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want a NotAppliedError naming Consul's error, got %v", err)
		}
	})
}

// The node publishes its version by registering its service again. This pins the property that makes
// that safe, against the real agent: a check that passes stays passing across re-registrations (the
// agent keeps its status), so routers never drop the node for it. The check is an HTTP check, as the
// node's is.
func TestRegisterAgainKeepsCheckPassing(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	reg := func(v int) {
		t.Helper()
		err := e.node.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: e.service + "-n", Name: e.service, Address: host, Port: p,
			Meta:  map[string]string{VersionMeta: strconv.Itoa(v)},
			Check: &consul.AgentServiceCheck{HTTP: srv.URL + "/readyz", Interval: "1s", Timeout: "1s", DeregisterCriticalServiceAfter: "1m"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	reg(1)
	t.Cleanup(func() { _ = e.node.Agent().ServiceDeregister(e.service + "-n") })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		nodes, err := Nodes(ctx, e.c, e.service)
		if err == nil && len(nodes) == 1 && nodes[0].Passing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check never passed: %+v %v", nodes, err)
		}
	}
	// Watch every state Consul reports while the service is registered again and again.
	var seenNotPassing atomic.Int32
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var index uint64
		for watchCtx.Err() == nil {
			entries, meta, err := e.c.Health().Service(e.service, "", false, (&consul.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(watchCtx))
			if err != nil {
				continue
			}
			for _, en := range entries {
				if en.Checks.AggregatedStatus() != consul.HealthPassing {
					seenNotPassing.Add(1)
				}
			}
			if len(entries) != 1 {
				seenNotPassing.Add(1)
			}
			index = meta.LastIndex
		}
	}()
	for v := 2; v <= 20; v++ {
		reg(v)
		if err := WaitApplied(ctx, e.c, e.service, uint64(v)); err != nil {
			t.Fatal(err)
		}
		nodes, err := Nodes(ctx, e.c, e.service)
		if err != nil || len(nodes) != 1 || !nodes[0].Passing || nodes[0].Version != uint64(v) {
			t.Fatalf("after registering version %d: %+v, %v", v, nodes, err)
		}
	}
	stopWatch()
	<-watched
	if n := seenNotPassing.Load(); n != 0 {
		t.Fatalf("Consul reported the node not passing %d times while it was registered again", n)
	}
}

// registerAt is register with the node's address: host:port of a server that answers VersionPath.
func (e *env) registerAt(id, version, status, addr string) {
	e.t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	reg := &consul.AgentServiceRegistration{ID: e.service + "-" + id, Name: e.service, Address: host, Port: p,
		Meta: map[string]string{VersionMeta: version}, Check: &consul.AgentServiceCheck{CheckID: e.service + "-" + id + "-ttl", TTL: "1h", Status: status}}
	if err := e.node.Agent().ServiceRegister(reg); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = e.node.Agent().ServiceDeregister(reg.ID) })
}

// versionServer is a node's VersionPath: it answers the version in have, long-polled (it looks
// every millisecond until it holds min or the wait runs out).
type versionServer struct {
	*httptest.Server
	have  atomic.Uint64
	asked atomic.Int64
}

func newVersionServer(t *testing.T, v uint64, status int) *versionServer {
	s := &versionServer{}
	s.have.Store(v)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.asked.Add(1)
		if r.URL.Path != VersionPath || status != http.StatusOK {
			http.Error(w, "no", status)
			return
		}
		minV, _ := strconv.ParseUint(r.URL.Query().Get("min"), 10, 64)
		wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
		for end := time.Now().Add(wait); s.have.Load() < minV && time.Now().Before(end) && r.Context().Err() == nil; {
			time.Sleep(time.Millisecond)
		}
		fmt.Fprintf(w, `{"version": %d}`, s.have.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *versionServer) bump(v uint64) { s.have.Store(v) }

// A passing node whose registration still carries an older version but that answers the version on
// VersionPath is done: WaitApplied ends when the node says so, without waiting for the catalog.
// A node that cannot be asked (a 404: an older binary) is waited for through Consul alone.
func TestWaitAppliedAsksTheNodes(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fast := newVersionServer(t, 4, http.StatusOK)
	old := newVersionServer(t, 0, http.StatusNotFound)
	e.registerAt("fast", "4", consul.HealthPassing, fast.Listener.Addr().String())
	e.registerAt("old", "4", consul.HealthPassing, old.Listener.Addr().String())

	done := make(chan error, 1)
	go func() { done <- WaitApplied(ctx, e.c, e.service, 5) }()
	time.Sleep(100 * time.Millisecond)
	fast.bump(5)
	select {
	case err := <-done:
		t.Fatalf("WaitApplied ended (%v) while the node that cannot be asked published 4", err)
	case <-time.After(200 * time.Millisecond):
	}
	if old.asked.Load() == 0 {
		t.Error("the node that cannot be asked was not asked")
	}
	e.registerAt("old", "5", consul.HealthPassing, old.Listener.Addr().String())
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitApplied did not end once the old node published the version")
	}

	// The fast node alone: its answer ends the wait though Consul says 4.
	e2 := newEnv(t)
	fast2 := newVersionServer(t, 4, http.StatusOK)
	e2.registerAt("fast", "4", consul.HealthPassing, fast2.Listener.Addr().String())
	go func() { done <- WaitApplied(ctx, e2.c, e2.service, 5) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	fast2.bump(5)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("WaitApplied ended %v after the node applied the version", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("WaitApplied did not end when the node answered the version")
	}
	if nodes, err := Nodes(ctx, e2.c, e2.service); err != nil || len(nodes) != 1 || nodes[0].Version != 4 {
		t.Fatalf("the catalog should still say 4: %+v, %v", nodes, err)
	}
	// A node that is not passing is not asked, and does not hold the wait.
	e3 := newEnv(t)
	down := newVersionServer(t, 1, http.StatusOK)
	e3.registerAt("down", "1", consul.HealthCritical, down.Listener.Addr().String())
	if err := WaitApplied(ctx, e3.c, e3.service, 9); err != nil {
		t.Fatal(err)
	}
	if down.asked.Load() != 0 {
		t.Error("a node that is not passing was asked")
	}
}
