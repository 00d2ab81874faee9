package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/uuid"
	consul "github.com/hashicorp/consul/api"
)

// The agent runs with ACLs on and a default policy of deny: a request without a token (the
// anonymous token, which has no policy) can do nothing. StartConsul keeps one token per role in
// the data folder's tokens/ subfolder, <role>.token (0600, the secret alone, as
// CONSUL_HTTP_TOKEN_FILE wants it), creates each once and reuses it afterwards:
//
//   - management: the initial management token (acl.tokens.initial_management), which the agent
//     bootstraps from its config on first start. It creates the others and nothing else uses it.
//   - agent: the agent's own token (acl.tokens.agent), to keep its node in the catalog.
//   - every role of ConsulConfig.Roles (ConsulRoles gives Meridian's: router, node-<region>,
//     shardmgr), with a policy named meridian-<role> holding the role's rules.
//
// Policies are brought up to date on every start, so a changed rule reaches an existing folder.
const (
	// RoleManagement and RoleAgent are the two tokens every agent has besides its Roles.
	RoleManagement = "management"
	RoleAgent      = "agent"
	// RoleRouter, RoleShardmgr and RoleNode are the role names ConsulRoles uses; a node role of
	// a region is NodeRole(region) unless the scope gives one node role for every service.
	RoleRouter   = "router"
	RoleShardmgr = "shardmgr"
	RoleNode     = "node"

	consulTokenDir    = "tokens"
	consulPolicyTag   = "meridian-"
	consulTokenSuffix = ".token"
)

// NodeRole is the role of the API nodes of region: they may register that region's service alone.
func NodeRole(region string) string { return RoleNode + "-" + region }

// ConsulRole is a holder of a Consul ACL token and what its policy allows.
type ConsulRole struct {
	// Name names the token file (tokens/<Name>.token) and the policy (meridian-<Name>): lower-case
	// letters, digits, '-' or '_'.
	Name string
	// Rules is the policy in Consul's rule language.
	Rules string
}

// ConsulScope is what the policies of ConsulRoles cover. A key or name that is empty or ends in
// "/" is a prefix (key_prefix, service_prefix); any other is exact.
type ConsulScope struct {
	// TopologyKey is the topology document's key: routers and nodes read it, shardmgr writes it.
	TopologyKey string
	// LockKey is the shard lock, MovesPrefix the move records' prefix and PinsPrefix the pin
	// records' prefix, which shardmgr writes.
	LockKey, MovesPrefix, PinsPrefix string
	// ServicePrefix starts the name of every region's API service: routers, nodes and shardmgr
	// read those services' health.
	ServicePrefix string
	// NodeServices maps a node role's name to the one service its nodes register (and deregister).
	NodeServices map[string]string
}

// ConsulRoles returns the least policies of Meridian's roles over s:
//
//   - router: reads the topology and the API services' health (the services and the nodes
//     they run on).
//   - each node role: what a router reads, and it registers its own service.
//   - shardmgr: writes the topology, the shard lock and the move and pin records, holds the lock through a
//     session, and reads the API services' health (a move's cutover waits for every node of a
//     region, and the rebalance planner finds the nodes there).
func ConsulRoles(s ConsulScope) []ConsulRole {
	read := []string{rule("key", s.TopologyKey, "read"), prefixRule("service", s.ServicePrefix, "read"), prefixRule("node", "", "read")}
	roles := []ConsulRole{{Name: RoleRouter, Rules: rules(read...)}}
	for _, name := range slices.Sorted(maps.Keys(s.NodeServices)) {
		// The write rule first: where it names what a read rule does (a scope of prefixes), it wins.
		roles = append(roles, ConsulRole{Name: name, Rules: rules(append([]string{rule("service", s.NodeServices[name], "write")}, read...)...)})
	}
	shardmgr := rules(rule("key", s.TopologyKey, "write"), rule("key", s.LockKey, "write"), rule("key", s.MovesPrefix, "write"),
		rule("key", s.PinsPrefix, "write"),
		// The shard lock's session lives on the agent's node.
		prefixRule("session", "", "write"),
		prefixRule("service", s.ServicePrefix, "read"), prefixRule("node", "", "read"))
	return append(roles, ConsulRole{Name: RoleShardmgr, Rules: shardmgr})
}

// rules joins rs, dropping repeats (scopes whose keys are one prefix).
func rules(rs ...string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, r := range rs {
		head, _, _ := strings.Cut(r, "{")
		if !seen[head] {
			seen[head] = true
			b.WriteString(r)
		}
	}
	return b.String()
}

func prefixRule(kind, prefix, policy string) string {
	return fmt.Sprintf("%s_prefix %q {\n  policy = %q\n}\n", kind, prefix, policy)
}

// rule is one rule of kind ("key", "service") on name, a prefix when empty or ending in "/".
func rule(kind, name, policy string) string {
	if name == "" || strings.HasSuffix(name, "/") {
		kind += "_prefix"
	}
	return fmt.Sprintf("%s %q {\n  policy = %q\n}\n", kind, name, policy)
}

// agentRules is the agent token's policy: its own node, and reading services to sync them.
func agentRules(node string) string {
	return rule("node", node, "write") + prefixRule("service", "", "read")
}

// ConsulTokenFile is the file holding role's token of the agent with data folder dataDir.
func ConsulTokenFile(dataDir, role string) string {
	return filepath.Join(dataDir, consulTokenDir, role+consulTokenSuffix)
}

// TokenFile returns the file holding role's token (RoleManagement, RoleAgent or one of the
// config's Roles), for CONSUL_HTTP_TOKEN_FILE.
func (c *Consul) TokenFile(role string) string { return ConsulTokenFile(c.Config().DataDir, role) }

// Token returns role's token.
func (c *Consul) Token(role string) (string, error) {
	if !c.hasRole(role) {
		return "", fmt.Errorf("consul: no role %q (known: %s)", role, strings.Join(c.roleNames(), ", "))
	}
	b, err := os.ReadFile(c.TokenFile(role))
	if err != nil {
		return "", fmt.Errorf("consul: token of %s: %w", role, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Client returns a client of the agent that authenticates as role.
func (c *Consul) Client(role string) (*consul.Client, error) {
	token, err := c.Token(role)
	if err != nil {
		return nil, err
	}
	return consul.NewClient(&consul.Config{Address: c.HTTPAddr(), Token: token})
}

func (c *Consul) roleNames() []string {
	names := []string{RoleManagement, RoleAgent}
	for _, r := range c.Config().Roles {
		names = append(names, r.Name)
	}
	return names
}

func (c *Consul) hasRole(role string) bool { return slices.Contains(c.roleNames(), role) }

// secret returns the token in file, creating it (a random UUID, as Consul's secret IDs are) when
// it does not exist yet.
func secret(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			if _, perr := uuid.Parse(s); perr != nil {
				return "", fmt.Errorf("%s: not a Consul token (want a UUID): %w", file, perr)
			}
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	s := uuid.NewString()
	if err := writeFileAtomic(file, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, nil
}

// managementToken returns the management token, creating its file on first use.
func (c *Consul) managementToken() (string, error) {
	return secret(ConsulTokenFile(c.cfg.DataDir, RoleManagement))
}

// ensureACL creates or updates every role's policy and token with the management token. It is
// idempotent: a token that exists (found by its secret) keeps its secret and gets the policy.
func (c *Consul) ensureACL(ctx context.Context) error {
	mgmt, err := c.managementToken()
	if err != nil {
		return fmt.Errorf("consul: management token: %w", err)
	}
	client, err := consul.NewClient(&consul.Config{Address: c.HTTPAddr(), Token: mgmt})
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	cfg := c.Config()
	roles := append([]ConsulRole{{Name: RoleAgent, Rules: agentRules(cfg.NodeName)}}, cfg.Roles...)
	for _, r := range roles {
		if err := ensureRole(ctx, client, cfg.DataDir, r); err != nil {
			return fmt.Errorf("consul: role %s: %w", r.Name, err)
		}
	}
	return nil
}

func ensureRole(ctx context.Context, client *consul.Client, dataDir string, r ConsulRole) error {
	acl := client.ACL()
	q := (&consul.QueryOptions{}).WithContext(ctx)
	w := (&consul.WriteOptions{}).WithContext(ctx)
	name := consulPolicyTag + r.Name
	policy, _, err := acl.PolicyReadByName(name, q)
	if err != nil {
		if strings.Contains(err.Error(), "ACL support disabled") {
			return fmt.Errorf("the running agent has ACLs off (it was started before they were on): stop it, and whatever uses it, and start again (for the local cluster: ./scripts/down.sh, then ./scripts/up.sh): %w", err)
		}
		return fmt.Errorf("reading policy %s: %w", name, err)
	}
	desc := "Meridian role " + r.Name + " (deploy/local)"
	switch {
	case policy == nil:
		if policy, _, err = acl.PolicyCreate(&consul.ACLPolicy{Name: name, Description: desc, Rules: r.Rules}, w); err != nil {
			return fmt.Errorf("creating policy %s: %w", name, err)
		}
	case policy.Rules != r.Rules:
		policy.Rules, policy.Description = r.Rules, desc
		if policy, _, err = acl.PolicyUpdate(policy, w); err != nil {
			return fmt.Errorf("updating policy %s: %w", name, err)
		}
	}
	sec, err := secret(ConsulTokenFile(dataDir, r.Name))
	if err != nil {
		return err
	}
	link := []*consul.ACLTokenPolicyLink{{ID: policy.ID}}
	tok, _, err := acl.TokenReadSelf((&consul.QueryOptions{Token: sec}).WithContext(ctx))
	if err != nil {
		var se consul.StatusError
		if !errors.As(err, &se) || se.Code != 403 {
			return fmt.Errorf("reading the token: %w", err)
		}
		// 403 "ACL not found": the secret is new (or the agent's data was removed).
		if _, _, err := acl.TokenCreate(&consul.ACLToken{SecretID: sec, Description: desc, Policies: link}, w); err != nil {
			return fmt.Errorf("creating the token: %w", err)
		}
		return nil
	}
	if len(tok.Policies) == 1 && tok.Policies[0].ID == policy.ID && len(tok.Roles) == 0 {
		return nil
	}
	tok.Policies, tok.Roles = link, nil
	if _, _, err := acl.TokenUpdate(tok, w); err != nil {
		return fmt.Errorf("updating the token: %w", err)
	}
	return nil
}
