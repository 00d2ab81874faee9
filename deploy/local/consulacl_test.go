package local

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// clusterScope is the scope the local cluster gives its roles (deploy/localcluster), for two regions.
var clusterScope = ConsulScope{
	TopologyKey: "meridian/topology", LockKey: "meridian/locks/shards", MovesPrefix: "meridian/moves/", PinsPrefix: "meridian/pins/",
	ServicePrefix: "meridian-api-",
	NodeServices:  map[string]string{NodeRole("us-east"): "meridian-api-us-east", NodeRole("eu-west"): "meridian-api-eu-west"},
}

func TestConsulRolesRules(t *testing.T) {
	roles := map[string]string{}
	for _, r := range ConsulRoles(clusterScope) {
		roles[r.Name] = r.Rules
	}
	if len(roles) != 4 {
		t.Fatalf("roles %v, want router, node-eu-west, node-us-east, shardmgr", roles)
	}
	for name, want := range map[string][]string{
		RoleRouter:          {`key "meridian/topology" {` + "\n  policy = \"read\"", `service_prefix "meridian-api-" {` + "\n  policy = \"read\"", `node_prefix "" {` + "\n  policy = \"read\""},
		NodeRole("us-east"): {`key "meridian/topology" {` + "\n  policy = \"read\"", `service "meridian-api-us-east" {` + "\n  policy = \"write\""},
		RoleShardmgr:        {`key "meridian/topology" {` + "\n  policy = \"write\"", `key "meridian/locks/shards" {` + "\n  policy = \"write\"", `key_prefix "meridian/moves/" {` + "\n  policy = \"write\"", `session_prefix "" {` + "\n  policy = \"write\""},
	} {
		for _, w := range want {
			if !strings.Contains(roles[name], w) {
				t.Errorf("%s rules lack %q:\n%s", name, w, roles[name])
			}
		}
	}
	for name, rules := range roles {
		if name != RoleShardmgr && strings.Contains(rules, `"write"`) && !strings.HasPrefix(name, RoleNode+"-") {
			t.Errorf("%s may write:\n%s", name, rules)
		}
		if strings.HasPrefix(name, RoleNode+"-") && strings.Count(rules, `"write"`) != 1 {
			t.Errorf("%s writes more than its service:\n%s", name, rules)
		}
	}
}

func TestConsulConfigValidateRoles(t *testing.T) {
	cfg := DefaultConsulConfig(t.TempDir())
	if cfg.Bin == "" {
		cfg.Bin = "/bin/sh"
	}
	for _, roles := range [][]ConsulRole{
		{{Name: RoleManagement, Rules: `key_prefix "" { policy = "write" }`}},
		{{Name: "Bad Name", Rules: `node_prefix "" { policy = "read" }`}},
		{{Name: "x", Rules: " "}},
		{{Name: "x", Rules: "a"}, {Name: "x", Rules: "a"}},
	} {
		cfg.Roles = roles
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", roles, err)
		}
	}
}

// aclClient is a client of c that sends token (none: the anonymous token).
func aclClient(t *testing.T, c *Consul, token string) *api.Client {
	t.Helper()
	client, err := api.NewClient(&api.Config{Address: c.HTTPAddr(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func roleClient(t *testing.T, c *Consul, role string) *api.Client {
	t.Helper()
	client, err := c.Client(role)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Errorf("%s: err = %v, want 403", what, err)
	}
}

func registration(service string) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{ID: service + "-fake", Name: service, Address: "127.0.0.1", Port: 1}
}

// TestConsulACL checks the agent the local cluster runs: without a token nothing goes through, a
// router cannot rewrite the topology or pose as a region's API service, a node registers its own
// region's service alone, and shardmgr runs a move's Consul operations with its token.
func TestConsulACL(t *testing.T) {
	integration(t)
	dir := filepath.Join(t.TempDir(), "consul")
	cfg := DefaultConsulConfig(dir)
	cfg.Roles = ConsulRoles(clusterScope)
	if cfg.Bin == "" {
		_, err := ConsulBinary()
		t.Fatal(err)
	}
	ctx := testCtx(t)
	c, err := StartConsul(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(ctx) })

	for _, role := range []string{RoleManagement, RoleAgent, RoleRouter, RoleShardmgr, NodeRole("us-east")} {
		st, err := os.Stat(c.TokenFile(role))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("token file of %s: %v, %v; want mode 0600", role, st, err)
		}
	}
	if _, err := c.Token("nobody"); err == nil {
		t.Error("Token of an unknown role succeeded")
	}

	shardmgr := roleClient(t, c, RoleShardmgr)
	if _, err := shardmgr.KV().Put(&api.KVPair{Key: "meridian/topology", Value: []byte(`{"version":1}`)}, nil); err != nil {
		t.Fatalf("shardmgr writes the topology: %v", err)
	}
	node := roleClient(t, c, NodeRole("us-east"))
	if err := node.Agent().ServiceRegister(registration("meridian-api-us-east")); err != nil {
		t.Fatalf("a us-east node registers its service: %v", err)
	}

	t.Run("anonymous can do nothing", func(t *testing.T) {
		anon := aclClient(t, c, "")
		_, _, err := anon.KV().Get("meridian/topology", nil)
		wantDenied(t, "anonymous KV read", err)
		_, err = anon.KV().Put(&api.KVPair{Key: "meridian/topology", Value: []byte("x")}, nil)
		wantDenied(t, "anonymous KV write", err)
		wantDenied(t, "anonymous service registration", anon.Agent().ServiceRegister(registration("meridian-api-us-east")))
		entries, _, err := anon.Health().Service("meridian-api-us-east", "", false, nil)
		if err != nil || len(entries) != 0 {
			t.Errorf("anonymous health read: %d entries, %v; want none", len(entries), err)
		}
		_, _, err = anon.Session().Create(&api.SessionEntry{TTL: "10s"}, nil)
		wantDenied(t, "anonymous session", err)
		_, _, err = aclClient(t, c, "00000000-0000-4000-8000-000000000000").KV().Get("meridian/topology", nil)
		wantDenied(t, "unknown token", err)
	})

	t.Run("router reads and writes nothing", func(t *testing.T) {
		router := roleClient(t, c, RoleRouter)
		if pair, _, err := router.KV().Get("meridian/topology", nil); err != nil || pair == nil {
			t.Errorf("router reads the topology: %v, %v", pair, err)
		}
		entries, _, err := router.Health().Service("meridian-api-us-east", "", false, nil)
		if err != nil || len(entries) != 1 {
			t.Errorf("router reads the service's health: %d entries, %v; want 1", len(entries), err)
		}
		_, err = router.KV().Put(&api.KVPair{Key: "meridian/topology", Value: []byte("{}")}, nil)
		wantDenied(t, "router writes the topology", err)
		_, _, err = router.KV().Get("meridian/moves/x", nil)
		wantDenied(t, "router reads a move record", err)
		wantDenied(t, "router registers a fake API service", router.Agent().ServiceRegister(registration("meridian-api-us-east")))
		_, _, err = router.Session().Create(&api.SessionEntry{TTL: "10s"}, nil)
		wantDenied(t, "router session", err)
	})

	t.Run("node registers its own service alone", func(t *testing.T) {
		_, err := node.KV().Put(&api.KVPair{Key: "meridian/topology", Value: []byte("{}")}, nil)
		wantDenied(t, "node writes the topology", err)
		wantDenied(t, "us-east node registers eu-west's service", node.Agent().ServiceRegister(registration("meridian-api-eu-west")))
		wantDenied(t, "node registers another service", node.Agent().ServiceRegister(registration("meridian-api-us-east2")))
		if pair, _, err := node.KV().Get("meridian/topology", nil); err != nil || pair == nil {
			t.Errorf("node reads the topology: %v, %v", pair, err)
		}
		if err := node.Agent().ServiceDeregister("meridian-api-us-east-fake"); err != nil {
			t.Errorf("node deregisters its service: %v", err)
		}
	})

	t.Run("shardmgr runs a move's operations", func(t *testing.T) {
		sid, _, err := shardmgr.Session().Create(&api.SessionEntry{TTL: "10s", Behavior: api.SessionBehaviorRelease}, nil)
		if err != nil {
			t.Fatalf("session: %v", err)
		}
		defer func() { _, _ = shardmgr.Session().Destroy(sid, nil) }()
		ok, _, err := shardmgr.KV().Acquire(&api.KVPair{Key: "meridian/locks/shards", Value: []byte("move"), Session: sid}, nil)
		if err != nil || !ok {
			t.Fatalf("lock: %v, %v", ok, err)
		}
		ok, _, err = shardmgr.KV().CAS(&api.KVPair{Key: "meridian/moves/m1", Value: []byte("{}"), ModifyIndex: 0}, nil)
		if err != nil || !ok {
			t.Fatalf("move record: %v, %v", ok, err)
		}
		pair, _, err := shardmgr.KV().Get("meridian/moves/m1", nil)
		if err != nil || pair == nil {
			t.Fatalf("reading the record: %v, %v", pair, err)
		}
		ok, _, _, err = shardmgr.Txn().Txn(api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: "meridian/locks/shards", Session: sid}},
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "meridian/moves/m1", Value: []byte(`{"step":1}`), Index: pair.ModifyIndex}},
		}, nil)
		if err != nil || !ok {
			t.Fatalf("record under the lock: %v, %v", ok, err)
		}
		topo, _, err := shardmgr.KV().Get("meridian/topology", nil)
		if err != nil || topo == nil {
			t.Fatalf("topology: %v, %v", topo, err)
		}
		ok, _, err = shardmgr.KV().CAS(&api.KVPair{Key: "meridian/topology", Value: []byte(`{"version":2}`), ModifyIndex: topo.ModifyIndex}, nil)
		if err != nil || !ok {
			t.Fatalf("topology CAS: %v, %v", ok, err)
		}
		if _, err := shardmgr.KV().Put(&api.KVPair{Key: "meridian/other", Value: []byte("x")}, nil); err == nil {
			t.Error("shardmgr writes outside its keys")
		}
		wantDenied(t, "shardmgr registers a service", shardmgr.Agent().ServiceRegister(registration("meridian-api-us-east")))
		if _, _, err := shardmgr.KV().Release(&api.KVPair{Key: "meridian/locks/shards", Session: sid}, nil); err != nil {
			t.Errorf("unlock: %v", err)
		}
	})

	t.Run("a restarted agent keeps its tokens", func(t *testing.T) {
		before, err := c.Token(RoleRouter)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		again, err := StartConsul(ctx, cfg, testLogger(t)) // reuses the running agent
		if err != nil {
			t.Fatal(err)
		}
		if after, _ := again.Token(RoleRouter); after != before {
			t.Errorf("router token changed across a restart: %s, then %s", before, after)
		}
		if _, _, err := roleClient(t, again, RoleRouter).KV().Get("meridian/topology", nil); err != nil {
			t.Errorf("router token after the restart: %v", err)
		}
		// The agent's own token keeps its node in the catalog.
		deadline := time.Now().Add(30 * time.Second)
		for {
			nodes, _, err := roleClient(t, again, RoleRouter).Catalog().Nodes(nil)
			if err == nil && len(nodes) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("catalog nodes: %v, %v; want the agent's", nodes, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// A folder whose agent still runs from before ACLs were on (a local cluster started by an older
// version) is not silently reused: StartConsul says to stop and start again.
func TestConsulReuseOfAnAgentWithoutACLs(t *testing.T) {
	integration(t)
	dir := filepath.Join(t.TempDir(), "consul")
	cfg := DefaultConsulConfig(dir)
	if cfg.Bin == "" {
		_, err := ConsulBinary()
		t.Fatal(err)
	}
	ctx := testCtx(t)
	c, err := StartConsul(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Start the same folder's agent with its config's acl block removed, as the older version wrote it.
	conf := filepath.Join(c.Config().DataDir, consulConfName)
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "acl")
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cfg.Bin, "agent", "-config-file", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	if err := os.WriteFile(c.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = StartConsul(ctx, cfg, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "ACLs off") || !strings.Contains(err.Error(), "start again") {
		t.Fatalf("StartConsul on an agent without ACLs: %v", err)
	}
}
