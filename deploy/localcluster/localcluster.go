// Package localcluster brings up and tears down a whole three-region Meridian on one machine: a
// PostgreSQL cluster per region (wal_level=logical, private ports and folders), a Redis per region, one
// Consul agent, the schema on every shard and the topology in Consul. Starting again is safe: running
// servers are reused, databases and migrations are idempotent, and a topology already in Consul is kept.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// Config says where the cluster lives and what it runs.
type Config struct {
	// Dir holds every server's data, logs and pid files.
	Dir string
	// TopologyFile is the local topology (deploy/regions/local/topology.yaml).
	TopologyFile string
	// ConsulHTTPPort, ConsulServerPort and ConsulSerfPort are the agent's ports.
	ConsulHTTPPort, ConsulServerPort, ConsulSerfPort int
	// TopologyKey is the Consul KV key of the topology document.
	TopologyKey string
	// ResetTopology replaces a topology already in Consul with the file's.
	ResetTopology bool
	// RepoDir is the module's root, where the programs are built from.
	RepoDir string
	// NodesPerRegion is how many API nodes run in each region.
	NodesPerRegion int
	// PortBase places the programs: region i (from 0) has its edge router on PortBase+100*(i+1) and its
	// API nodes on the ports after it.
	PortBase int
}

// DefaultConfig returns the layout the README documents.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:              dir,
		TopologyFile:     filepath.Join("deploy", "regions", "local", "topology.yaml"),
		ConsulHTTPPort:   18500,
		ConsulServerPort: 18300,
		ConsulSerfPort:   18301,
		TopologyKey:      topostore.DefaultKey,
		RepoDir:          ".",
		NodesPerRegion:   2,
		PortBase:         17000,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("localcluster: Dir is required")
	}
	if c.TopologyFile == "" {
		return errors.New("localcluster: TopologyFile is required")
	}
	for name, p := range map[string]int{"ConsulHTTPPort": c.ConsulHTTPPort, "ConsulServerPort": c.ConsulServerPort, "ConsulSerfPort": c.ConsulSerfPort} {
		if p < 1 || p > 65535 {
			return fmt.Errorf("localcluster: %s %d is out of range", name, p)
		}
	}
	if c.TopologyKey == "" {
		return errors.New("localcluster: TopologyKey is required")
	}
	if c.NodesPerRegion < 1 || c.NodesPerRegion > 9 {
		return fmt.Errorf("localcluster: NodesPerRegion %d must be 1..9", c.NodesPerRegion)
	}
	if c.PortBase < 1024 || c.PortBase > 65000 {
		return fmt.Errorf("localcluster: PortBase %d must be 1024..65000", c.PortBase)
	}
	return nil
}

// resolved validates c and makes Dir absolute: programs run with their own folder as working folder,
// so every path handed to them must not depend on ours.
func (c Config) resolved() (Config, error) {
	if err := c.Validate(); err != nil {
		return c, err
	}
	abs, err := filepath.Abs(c.Dir)
	if err != nil {
		return c, err
	}
	c.Dir = abs
	return c, nil
}

// pgCluster is one region's PostgreSQL cluster and the shard databases it holds.
type pgCluster struct {
	region string
	port   int
	dbs    []string
}

// plan derives the servers to run from the topology: one PostgreSQL per region and port, one Redis per
// region.
func plan(t *topology.Topology) ([]pgCluster, map[string]int, error) {
	var pgs []pgCluster
	idx := map[string]int{}
	for _, s := range t.Shards {
		if s.Conn.Host != "127.0.0.1" && s.Conn.Host != "localhost" {
			return nil, nil, fmt.Errorf("shard %s: host %s is not local; the local cluster only runs servers on 127.0.0.1", s.Name, s.Conn.Host)
		}
		key := s.Region + "/" + strconv.Itoa(s.Conn.Port)
		i, ok := idx[key]
		if !ok {
			i = len(pgs)
			idx[key] = i
			pgs = append(pgs, pgCluster{region: s.Region, port: s.Conn.Port})
		}
		pgs[i].dbs = append(pgs[i].dbs, s.Conn.Database)
	}
	redis := map[string]int{}
	for _, r := range t.Regions {
		_, port, err := net.SplitHostPort(r.RedisAddr)
		if err != nil {
			return nil, nil, err
		}
		p, _ := strconv.Atoi(port)
		redis[r.Name] = p
	}
	return pgs, redis, nil
}

func (c Config) pgConfig(pc pgCluster) local.PostgresConfig {
	return local.DefaultPostgresConfig(filepath.Join(c.Dir, "postgres", fmt.Sprintf("%s-%d", pc.region, pc.port)), pc.port)
}

func (c Config) redisConfig(region string, port int) local.RedisConfig {
	return local.DefaultRedisConfig(filepath.Join(c.Dir, "redis", region), port)
}

func (c Config) consulConfig() local.ConsulConfig {
	cc := local.DefaultConsulConfig(c.consulDir())
	cc.HTTPPort, cc.ServerPort, cc.SerfLANPort = c.ConsulHTTPPort, c.ConsulServerPort, c.ConsulSerfPort
	return cc
}

func (c Config) consulDir() string { return filepath.Join(c.Dir, "consul") }

// consulTokenFile is the file of role's Consul token (consul/tokens/<role>.token), which the programs
// get as CONSUL_HTTP_TOKEN_FILE.
func (c Config) consulTokenFile(role string) string {
	return local.ConsulTokenFile(c.consulDir(), role)
}

// apiServicePrefix starts every region's API service name: routers read the services under it.
const apiServicePrefix = "meridian-api-"

// consulRoles are the cluster's Consul ACL roles over t: a router role, a node role per region that
// may register that region's API service alone, and shardmgr's over the topology key, the shard lock
// and the move records.
func (c Config) consulRoles(t *topology.Topology) ([]local.ConsulRole, error) {
	s := local.ConsulScope{
		TopologyKey: c.TopologyKey, LockKey: shardlock.DefaultKey, MovesPrefix: move.DefaultPrefix, PinsPrefix: move.DefaultPinPrefix,
		ServicePrefix: apiServicePrefix, NodeServices: map[string]string{},
	}
	for _, r := range t.Regions {
		if !strings.HasPrefix(r.APIService, apiServicePrefix) {
			return nil, fmt.Errorf("region %s: api_service %q must start with %q: the routers' Consul policy reads those services alone", r.Name, r.APIService, apiServicePrefix)
		}
		s.NodeServices[local.NodeRole(r.Name)] = r.APIService
	}
	return local.ConsulRoles(s), nil
}

// Up starts everything that is not running, creates the shard databases, applies migrations and writes
// the topology if Consul has none. It prints what it did and how to use the cluster to out.
func Up(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	cfg, err := cfg.resolved()
	if err != nil {
		return err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	topo, err := topology.LoadFile(cfg.TopologyFile)
	if err != nil {
		return err
	}
	pgs, redis, err := plan(topo)
	if err != nil {
		return err
	}
	ccfg := cfg.consulConfig()
	if ccfg.Roles, err = cfg.consulRoles(topo); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}

	fmt.Fprintln(out, "starting PostgreSQL (one cluster per region, wal_level=logical)...")
	for _, pc := range pgs {
		pg, err := local.StartPostgres(ctx, cfg.pgConfig(pc), log)
		if err != nil {
			return fmt.Errorf("region %s: %w", pc.region, err)
		}
		for _, db := range pc.dbs {
			if err := pg.CreateDatabase(ctx, db); err != nil {
				return fmt.Errorf("region %s: %w", pc.region, err)
			}
		}
	}
	fmt.Fprintln(out, "starting Redis (one per region)...")
	for _, r := range topo.Regions {
		if _, err := local.StartRedis(ctx, cfg.redisConfig(r.Name, redis[r.Name]), log); err != nil {
			return fmt.Errorf("region %s: %w", r.Name, err)
		}
	}
	fmt.Fprintln(out, "starting Consul (ACLs on, default deny; a token per role in "+filepath.Join(cfg.consulDir(), "tokens")+")...")
	agent, err := local.StartConsul(ctx, ccfg, log)
	if err != nil {
		return err
	}
	// Up writes the topology and waits for the nodes as shardmgr would.
	client, err := agent.Client(local.RoleShardmgr)
	if err != nil {
		return err
	}
	store := topostore.NewStore(client, cfg.TopologyKey)
	inForce, note, err := writeTopology(ctx, store, topo, cfg.ResetTopology)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, note)

	fmt.Fprintln(out, "applying migrations to every shard...")
	var targets []migrate.Target
	for _, s := range inForce.Shards {
		targets = append(targets, migrate.Target{Shard: s.Name, DSN: shardpool.ConnString(s.Conn, "")})
	}
	results, err := migrate.Up(ctx, targets, migrate.Options{Logger: log})
	if err != nil {
		return err
	}
	applied := 0
	for _, r := range results {
		applied += len(r.Applied)
	}
	fmt.Fprintf(out, "migrations: %d applied now across %d shards (the rest were already applied)\n", applied, len(results))

	if err := ensureSecrets(cfg.Dir); err != nil {
		return err
	}
	if err := ensurePKI(cfg, inForce); err != nil {
		return err
	}
	fmt.Fprintf(out, "mutual TLS between routers and nodes: CA and certificates in %s\n", cfg.pki())
	fmt.Fprintln(out, "building the API node and the edge router...")
	if err := buildBinaries(ctx, cfg, out, "api", "router"); err != nil {
		return err
	}
	fmt.Fprintf(out, "starting %d API nodes per region...\n", cfg.NodesPerRegion)
	if err := startAPINodes(ctx, cfg, inForce, agent.HTTPAddr(), log); err != nil {
		return err
	}
	if err := waitPassing(ctx, client, inForce); err != nil {
		return err
	}
	fmt.Fprintln(out, "starting an edge router per region...")
	if err := startRouters(ctx, cfg, inForce, agent.HTTPAddr(), log); err != nil {
		return err
	}
	// The demo data goes in as a client would send it: through each region's router.
	demo := &demoClient{http: &http.Client{Timeout: 30 * time.Second}, base: map[string]string{}, mailDir: cfg.MailDir()}
	for i, r := range inForce.Regions {
		demo.base[r.Name] = fmt.Sprintf("http://127.0.0.1:%d", cfg.RouterPort(i))
	}
	seed, err := seedDemo(ctx, demo, out)
	if err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	fmt.Fprintln(out)
	printSummary(out, cfg, inForce, agent.HTTPAddr(), seed)
	return nil
}

// writeTopology creates the topology in Consul, or keeps the one there (an SRE may have changed it since)
// unless reset is set.
func writeTopology(ctx context.Context, store *topostore.Store, file *topology.Topology, reset bool) (*topology.Topology, string, error) {
	cur, idx, err := store.Load(ctx)
	switch {
	case errors.Is(err, topostore.ErrNotFound):
		if _, err := store.Create(ctx, file); err != nil {
			return nil, "", fmt.Errorf("writing the topology: %w", err)
		}
		return file, fmt.Sprintf("topology written to Consul (version %d)", file.Version), nil
	case err != nil:
		return nil, "", fmt.Errorf("reading the topology: %w", err)
	}
	if sameLayout(cur, file) {
		return cur, fmt.Sprintf("topology already in Consul (version %d)", cur.Version), nil
	}
	if !reset {
		return cur, fmt.Sprintf("topology in Consul (version %d) differs from %s; kept it (use --reset-topology to replace it)", cur.Version, "the file"), nil
	}
	next := file.Clone()
	next.Version = cur.Version
	if _, err := store.Update(ctx, next, idx); err != nil {
		return nil, "", fmt.Errorf("replacing the topology: %w", err)
	}
	return next, fmt.Sprintf("topology replaced from the file (version %d)", next.Version), nil
}

func sameLayout(a, b *topology.Topology) bool {
	x, y := a.Clone(), b.Clone()
	x.Version, y.Version = 0, 0
	x.UpdatedAt, y.UpdatedAt = time.Time{}, time.Time{}
	ea, _ := x.Encode()
	eb, _ := y.Encode()
	return string(ea) == string(eb)
}

func printSummary(out io.Writer, cfg Config, t *topology.Topology, consulAddr string, seed demoSeed) {
	freelancers, jobs := demoMarketCounts()
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tCODE\tEDGE ROUTER\tROUTER OPS\tAPI NODES\tPOSTGRESQL\tSHARDS\tREDIS")
	nodes := cfg.apiNodes(t)
	for i, r := range t.Regions {
		addrs := ""
		for _, n := range nodes {
			if n.region == r.Name {
				if addrs != "" {
					addrs += " "
				}
				addrs += fmt.Sprintf("127.0.0.1:%d", n.port)
			}
		}
		shards, port := "", 0
		for _, s := range t.ShardsIn(r.Name) {
			if shards != "" {
				shards += ", "
			}
			shards += s.Name
			port = s.Conn.Port
		}
		fmt.Fprintf(tw, "%s\t%s\thttp://127.0.0.1:%d\t127.0.0.1:%d\t%s\t127.0.0.1:%d\t%s\t%s\n", r.Name, r.Code, cfg.RouterPort(i), cfg.RouterOpsPort(i), addrs, port, shards, r.RedisAddr)
	}
	tw.Flush()
	fmt.Fprintf(out, `
Consul:  http://%[1]s  (topology at key %[2]s; ACLs on, a token per role in %[6]s)
Data:    %[3]s

Use it through any edge router (each sends every request to the caller's home region):
  R=http://127.0.0.1:%[4]d
  # log in as Bruno (eu-west) through the us-east router
  TOKEN=$(curl -s $R/api/v1/auth/login -H 'Content-Type: application/json' \
    -d '{"email":"bruno@demo.8thdegree.test","password":"%[5]s"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -si $R/api/v1/users/me -H "Authorization: Bearer $TOKEN"        # X-Meridian-Region: eu-west
  curl -s "$R/api/v1/jobs/search?q=postgresql&scope=global"             # every region's jobs
  curl -s $R/api/v1/openapi.json                                        # the API reference

Hiring (docs/hiring.md): Alice (us-east) hired Bruno (eu-west) and both reviewed each other;
Chitra's (ap-south) proposal to Alice's React job is pending:
  ALICE=$(curl -s $R/api/v1/auth/login -H 'Content-Type: application/json' \
    -d '{"email":"alice@demo.8thdegree.test","password":"%[5]s"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s $R/api/v1/contracts/ -H "Authorization: Bearer $ALICE"                  # Alice's contracts, from her home shard
  curl -s $R/api/v1/contracts/%[9]s -H "Authorization: Bearer $TOKEN"             # the contract, read by Bruno in Alice's region
  curl -s $R/api/v1/proposals/%[10]s -H "Authorization: Bearer $ALICE"            # Bruno's proposal and cover letter, read in eu-west
  curl -s "$R/api/v1/jobs/%[11]s/proposals?sort=best" -H "Authorization: Bearer $ALICE"   # the React job's proposals (no cover letters)
  curl -s "$R/api/v1/reviews/stats?user_id=%[12]s"                                # Bruno's rating, from verified reviews only

Matching: %[13]d generated freelancers and %[14]d jobs besides the users above, in every region (emails @%[15]s, same password).
Each list explains every score signal by signal (reasons) and reports how exposure is spread over countries and regions (fairness):
  curl -s "$R/api/v1/jobs/matching?job_id=%[16]s" -H "Authorization: Bearer $ALICE"                # us-east's best freelancers for Alice's sharding job
  curl -s "$R/api/v1/jobs/matching?job_id=%[16]s&scope=global" -H "Authorization: Bearer $ALICE"   # every region ranks its own (Bruno among them), merged
  curl -s "$R/api/v1/jobs/matching" -H "Authorization: Bearer $TOKEN"                               # the best open jobs in eu-west for Bruno
  curl -s "$R/api/v1/jobs/matching?scope=global" -H "Authorization: Bearer $TOKEN"                  # ... and in every region

Mail (verification links) is delivered to %[3]s/mail, one .eml file per message:
  curl -s $R/api/v1/auth/register -H 'Content-Type: application/json' \
    -d '{"email":"you@example.test","password":"a long password","name":"You","role":"client"}'
  TOK=$(grep -ho 'token=mev_[A-Za-z0-9_.-]*' $(grep -l 'To: <you@example.test>' %[3]s/mail/*.eml) | tail -1 | cut -d= -f2)
  curl -si $R/api/v1/auth/verify-email -H 'Content-Type: application/json' -d "{\"token\":\"$TOK\"}"   # 204

Operate it:
  export CONSUL_HTTP_ADDR=%[1]s
  export CONSUL_HTTP_TOKEN_FILE=%[7]s
  go run ./cmd/shardmgr status            # regions, shards, keyranges, rows and bytes
  go run ./cmd/shardmgr topology show     # the topology document (add -o json)
  go run ./cmd/shardmgr migrate status    # schema version of every shard
  go run ./cmd/shardmgr plan              # proposed splits and moves per region (changes nothing)
  go run ./cmd/shardmgr moves --all       # online moves, their steps and write pauses
  go run ./cmd/shardmgr residency audit   # is every row in its owner's region? (exit 1 if not)
  curl -s 127.0.0.1:%[8]d/metrics | head   # the us-east router's metrics (its ops listener, never the public one)
  psql "postgres://meridian@127.0.0.1:15432/meridian_us_east_1"   # a shard, by hand
  # adding a shard, splitting, moving and rebalancing online: docs/rebalancing.md and docs/moves.md
Stop everything with: ./scripts/down.sh
`, consulAddr, cfg.TopologyKey, cfg.Dir, cfg.RouterPort(0), DemoPassword, filepath.Join(cfg.consulDir(), "tokens"), cfg.consulTokenFile(local.RoleShardmgr), cfg.RouterOpsPort(0),
		seed.Contract, seed.BrunoProposal, seed.ReactJob, seed.BrunoID, freelancers, jobs, demoMarketDomain, seed.ShardingJob)
}

// Down stops every server of the cluster in cfg.Dir. Data stays on disk; the next Up reuses it.
func Down(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	cfg, err := cfg.resolved()
	if err != nil {
		return err
	}
	topo, err := topology.LoadFile(cfg.TopologyFile)
	if err != nil {
		return err
	}
	pgs, redis, err := plan(topo)
	if err != nil {
		return err
	}
	var errs []error
	if err := stopRouters(ctx, cfg, topo); err != nil {
		errs = append(errs, err)
	}
	if err := stopAPINodes(ctx, cfg, topo); err != nil {
		errs = append(errs, err)
	}
	if err := local.StopConsulDir(ctx, cfg.consulConfig()); err != nil {
		errs = append(errs, err)
	}
	for _, r := range topo.Regions {
		if err := local.StopRedisDir(ctx, cfg.redisConfig(r.Name, redis[r.Name])); err != nil {
			errs = append(errs, err)
		}
	}
	for _, pc := range pgs {
		if err := local.StopPostgresDir(ctx, cfg.pgConfig(pc)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		fmt.Fprintf(out, "stopped %d edge routers, %d API nodes, Consul, %d Redis and %d PostgreSQL servers (data kept in %s)\n", len(topo.Regions), len(cfg.apiNodes(topo)), len(redis), len(pgs), cfg.Dir)
	}
	return errors.Join(errs...)
}
