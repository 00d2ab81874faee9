package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// secretNames are the shared secrets every node of the local cluster reads from files.
var secretNames = []string{"email-pepper", "oauth-state-key"}

// certTTL is the validity of the local cluster's process certificates; `up` issues a certificate
// again when less than a quarter of it is left (mtls.Dir.Ensure).
const certTTL = 365 * 24 * time.Hour

// pki is the folder of the cluster's private CA and its processes' certificates (.local-cluster/pki).
func (c Config) pki() mtls.Dir { return mtls.Dir(filepath.Join(c.Dir, "pki")) }

// ensurePKI creates the cluster's CA once and a certificate per router and API node: identity
// spiffe://meridian/router/<region> and spiffe://meridian/node/<region>/<node name>.
func ensurePKI(cfg Config, t *topology.Topology) error {
	certs := map[string]mtls.Identity{}
	for _, r := range t.Regions {
		certs[routerName(r.Name)] = mtls.Router(r.Name)
	}
	for _, n := range cfg.apiNodes(t) {
		certs[n.name()] = mtls.Node(n.region, n.name())
	}
	_, err := cfg.pki().Ensure(certs, certTTL)
	return err
}

func tlsEnv(f mtls.Files) []string {
	return []string{"MERIDIAN_TLS=on", "MERIDIAN_TLS_CA_FILE=" + f.CA, "MERIDIAN_TLS_CERT_FILE=" + f.Cert, "MERIDIAN_TLS_KEY_FILE=" + f.Key}
}

// ensureSecrets creates, once, the signing key and the shared secrets the nodes read. They are kept, so a
// restarted cluster still accepts the tokens it issued.
func ensureSecrets(dir string) error {
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return err
	}
	if m, _ := filepath.Glob(filepath.Join(keys, "*.pem")); len(m) == 0 {
		k, err := tokenissue.GenerateKey()
		if err != nil {
			return err
		}
		if err := tokenissue.WriteKeyFile(filepath.Join(keys, "0001.pem"), k); err != nil {
			return err
		}
	}
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return err
	}
	for _, name := range secretNames {
		p := filepath.Join(secrets, name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(base64.RawURLEncoding.EncodeToString(b[:])), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// buildBinaries compiles the programs the cluster runs into <dir>/bin.
func buildBinaries(ctx context.Context, cfg Config, out io.Writer, names ...string) error {
	bin := filepath.Join(cfg.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.RepoDir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %v: %w", names, err)
	}
	return nil
}

// apiNode is one API node process of the cluster: its API (mutual TLS) on port, its operations
// endpoints (plain HTTP, Consul's check) on opsPort.
type apiNode struct {
	region  string
	index   int
	port    int
	opsPort int
}

func (n apiNode) name() string { return fmt.Sprintf("api-%s-%d", n.region, n.index) }

func (c Config) apiNodes(t *topology.Topology) []apiNode {
	var out []apiNode
	for i, r := range t.Regions {
		for j := 1; j <= c.NodesPerRegion; j++ {
			base := c.PortBase + 100*(i+1)
			out = append(out, apiNode{region: r.Name, index: j, port: base + j, opsPort: base + opsPortOffset + j})
		}
	}
	return out
}

// MailDir is the folder the cluster's API nodes deliver mail to (verification links), one .eml file
// per message.
func (c Config) MailDir() string { return filepath.Join(c.Dir, "mail") }

// opsPortOffset places an API node's operations listener: region i's node j has it on
// PortBase+100*(i+1)+50+j (17151 for us-east's first node).
const opsPortOffset = 50

// RouterPort is the port of the edge router of the i-th region.
func (c Config) RouterPort(i int) int { return c.PortBase + 100*(i+1) }

// RouterOpsPort is the port of the edge router's ops listener (/healthz, /readyz, /metrics) of the i-th
// region: they are never on RouterPort, which is what clients reach.
func (c Config) RouterOpsPort(i int) int { return c.RouterPort(i) + 90 }

func (c Config) apiProcess(n apiNode, consulAddr string) local.ProcessConfig {
	dir := filepath.Join(c.Dir, "api", n.name())
	addr := fmt.Sprintf("127.0.0.1:%d", n.port)
	opsAddr := fmt.Sprintf("127.0.0.1:%d", n.opsPort)
	env := []string{
		"MERIDIAN_REGION=" + n.region,
		"MERIDIAN_LISTEN=" + addr,
		"MERIDIAN_OPS_LISTEN=" + opsAddr,
		"MERIDIAN_NODE_ID=" + n.name(),
		"CONSUL_HTTP_ADDR=" + consulAddr,
		"CONSUL_HTTP_TOKEN_FILE=" + c.consulTokenFile(local.NodeRole(n.region)),
		"MERIDIAN_TOPOLOGY_KEY=" + c.TopologyKey,
		"MERIDIAN_TOPOLOGY_CACHE=" + filepath.Join(dir, "topology.json"),
		"MERIDIAN_SIGNING_KEY_DIR=" + filepath.Join(c.Dir, "keys"),
		"MERIDIAN_EMAIL_PEPPER_FILE=" + filepath.Join(c.Dir, "secrets", "email-pepper"),
		"MERIDIAN_OAUTH_STATE_KEY_FILE=" + filepath.Join(c.Dir, "secrets", "oauth-state-key"),
		"MERIDIAN_PUBLIC_URL=" + fmt.Sprintf("http://127.0.0.1:%d", c.PortBase+100),
		// Every node of every region delivers its mail to one folder, one .eml file per message.
		"MERIDIAN_MAIL_DIR=" + c.MailDir(),
		// The routers connect from 127.0.0.1: their X-Forwarded-For names the client.
		"MERIDIAN_TRUSTED_PROXIES=127.0.0.1",
	}
	env = append(env, tlsEnv(c.pki().Files(n.name()))...)
	return local.ProcessConfig{
		Name:     n.name(),
		Bin:      filepath.Join(c.Dir, "bin", "api"),
		Env:      env,
		Dir:      dir,
		ReadyURL: "http://" + opsAddr + "/readyz",
	}
}

func startAPINodes(ctx context.Context, cfg Config, t *topology.Topology, consulAddr string, log *slog.Logger) error {
	for _, n := range cfg.apiNodes(t) {
		if _, err := local.StartProcess(ctx, cfg.apiProcess(n, consulAddr), log); err != nil {
			return err
		}
	}
	return nil
}

func stopAPINodes(ctx context.Context, cfg Config, t *topology.Topology) error {
	var errs []error
	for _, n := range cfg.apiNodes(t) {
		if err := local.StopProcess(ctx, cfg.apiProcess(n, "")); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// routerProcess is the edge router of the i-th region.
func (c Config) routerProcess(i int, region, consulAddr string) local.ProcessConfig {
	name := routerName(region)
	dir := filepath.Join(c.Dir, "router", name)
	addr := fmt.Sprintf("127.0.0.1:%d", c.RouterPort(i))
	ops := fmt.Sprintf("127.0.0.1:%d", c.RouterOpsPort(i))
	return local.ProcessConfig{
		Name: name,
		Bin:  filepath.Join(c.Dir, "bin", "router"),
		Env: append(tlsEnv(c.pki().Files(name)),
			"MERIDIAN_REGION="+region,
			"MERIDIAN_ROUTER_LISTEN="+addr,
			"MERIDIAN_ROUTER_OPS_LISTEN="+ops,
			"CONSUL_HTTP_ADDR="+consulAddr,
			"CONSUL_HTTP_TOKEN_FILE="+c.consulTokenFile(local.RoleRouter),
			"MERIDIAN_TOPOLOGY_KEY="+c.TopologyKey,
			"MERIDIAN_TOPOLOGY_CACHE="+filepath.Join(dir, "topology.json"),
			"MERIDIAN_ROUTER_ACCESS_LOG="+filepath.Join(dir, "access.log"),
		),
		Dir:      dir,
		ReadyURL: "http://" + ops + "/readyz",
	}
}

func routerName(region string) string { return "router-" + region }

func startRouters(ctx context.Context, cfg Config, t *topology.Topology, consulAddr string, log *slog.Logger) error {
	for i, r := range t.Regions {
		if _, err := local.StartProcess(ctx, cfg.routerProcess(i, r.Name, consulAddr), log); err != nil {
			return err
		}
	}
	return nil
}

func stopRouters(ctx context.Context, cfg Config, t *topology.Topology) error {
	var errs []error
	for i, r := range t.Regions {
		if err := local.StopProcess(ctx, cfg.routerProcess(i, r.Name, "")); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
