package residency

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// cluster is the example topology on fresh, migrated shard databases, with a pool manager.
type cluster struct {
	topo  *topology.Topology
	tab   *topology.Table
	pools *shardpool.Manager
	ids   *shardkey.Generator
	users []user
}

type user struct {
	ksid   shardkey.KeyspaceID
	id     shardkey.ID
	email  string
	region string
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	topo := topology.Example()
	fixture.Shards(t, topo, 4)
	return clusterOn(t, topo)
}

func clusterOn(t testing.TB, topo *topology.Topology) *cluster {
	t.Helper()
	pools, err := shardpool.New(shardpool.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pools.Close)
	if err := pools.Apply(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	return &cluster{topo: topo, tab: pools.Table(), pools: pools, ids: shardkey.NewGenerator(time.Now, rand.Reader)}
}

func (c *cluster) exec(t testing.TB, shard, sql string, args ...any) {
	t.Helper()
	tg, err := c.pools.Shard(shard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %s: %v", shard, sql, err)
	}
}

func (c *cluster) shardOf(t testing.TB, k shardkey.KeyspaceID) string {
	t.Helper()
	r, err := c.tab.Lookup(k)
	if err != nil {
		t.Fatal(err)
	}
	return r.Shard.Name
}

func (c *cluster) newUser(t testing.TB, region string, n int) user {
	t.Helper()
	reg, _ := c.topo.Region(region)
	k := shardkey.NewKeyspaceID(reg.Code, fmt.Appendf(nil, "%s-%d", region, n))
	id, err := c.ids.New(shardkey.KindUser, k)
	if err != nil {
		t.Fatal(err)
	}
	return user{ksid: k, id: id, email: fmt.Sprintf("u%d@%s.example.test", n, region), region: region}
}

// rowsPerUser is what put writes for one user (claims apart).
const rowsPerUser = 5

// put writes a user's rows under ksid k on shard: the user, a profile, a job, an audit entry whose
// actor is another user, and a review of the user written by another user. The other users' IDs
// are reference columns: the audit must not flag them, whatever region they name.
func (c *cluster) put(t testing.TB, shard string, u user, k shardkey.KeyspaceID, other shardkey.ID) {
	t.Helper()
	job, _ := c.ids.New(shardkey.KindJob, k)
	rev, _ := c.ids.New(shardkey.KindReview, k)
	aud, _ := c.ids.New(shardkey.KindAudit, k)
	reg, _ := c.topo.RegionByCode(k.Region())
	c.exec(t, shard, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, $3, $3, 'Test', 'freelancer', $4)`, k.Bytes(), u.id.Bytes(), u.email, reg.Name)
	c.exec(t, shard, `INSERT INTO core.profiles (ksid, user_id, headline) VALUES ($1, $2, 'hello')`, k.Bytes(), u.id.Bytes())
	c.exec(t, shard, `INSERT INTO core.jobs (ksid, id, owner_id, title) VALUES ($1, $2, $3, 'a job')`, k.Bytes(), job.Bytes(), u.id.Bytes())
	c.exec(t, shard, `INSERT INTO core.audit_log (ksid, id, actor_id, action) VALUES ($1, $2, $3, 'auth.login')`, k.Bytes(), aud.Bytes(), other.Bytes())
	c.exec(t, shard, `INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, rating) VALUES ($1, $2, $3, $4, $5, 5)`, k.Bytes(), rev.Bytes(), other.Bytes(), u.id.Bytes(), job.Bytes())
}

// claim writes the user's email claim where the directory puts it.
func (c *cluster) claim(t testing.TB, u user, home string) {
	t.Helper()
	h := sha256.Sum256([]byte(u.email))
	k, err := claimKeyspaceID(c.topo, h[:])
	if err != nil {
		t.Fatal(err)
	}
	c.exec(t, c.shardOf(t, k), `INSERT INTO auth.email_claims (ksid, email_hash, user_id, home_region) VALUES ($1, $2, $3, $4)`, k.Bytes(), h[:], u.id.Bytes(), home)
}

// seed writes perRegion users into each region, each on the shard that owns their ksid, with
// references to users of the next region, and their claims.
func (c *cluster) seed(t testing.TB, perRegion int) int64 {
	t.Helper()
	for _, r := range c.topo.Regions {
		for i := range perRegion {
			c.users = append(c.users, c.newUser(t, r.Name, i))
		}
	}
	for i, u := range c.users {
		other := c.users[(i+perRegion)%len(c.users)] // a user of another region
		c.put(t, c.shardOf(t, u.ksid), u, u.ksid, other.id)
		c.claim(t, u, u.region)
	}
	return int64(len(c.users) * (rowsPerUser + 1))
}

func (c *cluster) audit(t testing.TB, topo *topology.Topology, opts Options) Report {
	t.Helper()
	rep, err := Audit(context.Background(), topo, c.pools, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// offendersOf returns the offenders of one class in the report.
func offendersOf(rep Report, class Class) []Offender {
	var out []Offender
	for _, s := range rep.Shards {
		for _, tr := range s.Tables {
			for _, o := range tr.Offenders {
				if o.Class == class {
					out = append(out, o)
				}
			}
		}
	}
	return out
}

func otherShard(t testing.TB, topo *topology.Topology, region, not string) string {
	t.Helper()
	for _, s := range topo.ShardsIn(region) {
		if s.Name != not {
			return s.Name
		}
	}
	t.Fatalf("no second shard in %s", region)
	return ""
}

func TestAudit(t *testing.T) {
	c := newCluster(t)
	seeded := c.seed(t, 6)

	t.Run("a clean cluster passes", func(t *testing.T) {
		rep := c.audit(t, c.topo, Options{})
		if rep.Verdict != Clean || rep.Totals.Violations != 0 || rep.Totals.Rows != seeded {
			t.Fatalf("verdict %s, %d violations in %d rows (seeded %d): %s", rep.Verdict, rep.Totals.Violations, rep.Totals.Rows, seeded, rep.Summary())
		}
		var tables int
		sh, err := c.pools.Shard(c.topo.Shards[0].Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname IN ('auth', 'core', 'ai')`).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if rep.Totals.Shards != 6 || rep.Totals.ShardsFailed != 0 || rep.Totals.Tables != 6*tables {
			t.Fatalf("totals %+v", rep.Totals)
		}
		if rep.TopologyVersion != c.topo.Version || rep.FinishedAt.Before(rep.StartedAt) {
			t.Fatalf("version %d, times %s..%s", rep.TopologyVersion, rep.StartedAt, rep.FinishedAt)
		}
		eu := c.audit(t, c.topo, Options{Region: "eu-west"})
		if eu.Verdict != Clean || eu.Totals.Shards != 2 || eu.Totals.Rows == 0 || eu.Totals.Rows >= rep.Totals.Rows {
			t.Fatalf("eu-west only: %s, %+v", eu.Summary(), eu.Totals)
		}
		if _, err := Audit(context.Background(), c.topo, c.pools, Options{Region: "mars"}); err == nil {
			t.Fatal("an unknown region was audited")
		}
	})

	t.Run("a row in the wrong region is found and its key listed", func(t *testing.T) {
		u := c.newUser(t, "us-east", 100)
		c.put(t, "eu-west-1", u, u.ksid, c.users[0].id)
		t.Cleanup(func() { c.exec(t, "eu-west-1", `DELETE FROM auth.users WHERE ksid = $1`, u.ksid.Bytes()) })
		c.exec(t, "eu-west-1", `DELETE FROM core.audit_log WHERE ksid = $1`, u.ksid.Bytes()) // keep one audit row out of it
		rep := c.audit(t, c.topo, Options{})
		if rep.Verdict != Violations || rep.Totals.ByClass[WrongRegion] != rowsPerUser-1 || rep.Totals.Violations != rowsPerUser-1 {
			t.Fatalf("%s: %+v", rep.Summary(), rep.Totals)
		}
		var userRow *Offender
		for _, o := range offendersOf(rep, WrongRegion) {
			if o.KeyspaceID != u.ksid.String() || o.Region != "us-east" || o.BelongsShard != c.shardOf(t, u.ksid) {
				t.Errorf("offender %+v", o)
			}
			if o.Key == u.ksid.String()+"|"+fmt.Sprintf("%x", u.id.Bytes()) {
				userRow = &o
			}
		}
		if userRow == nil {
			t.Fatalf("the planted user row is not listed: %+v", offendersOf(rep, WrongRegion))
		}
		if !strings.Contains(rep.Summary(), "wrong_region 4") {
			t.Errorf("summary %q", rep.Summary())
		}
		// The region's own shards report it; the rest of the cluster stays clean.
		for _, s := range rep.Shards {
			if (s.Violations > 0) != (s.Shard == "eu-west-1") {
				t.Errorf("shard %s: %d violations", s.Shard, s.Violations)
			}
		}
	})

	t.Run("a row on the wrong shard of the right region is its own class", func(t *testing.T) {
		u := c.users[0] // us-east
		home := c.shardOf(t, u.ksid)
		wrong := otherShard(t, c.topo, u.region, home)
		c.exec(t, wrong, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, 'stray@example.test', 'stray@example.test', 'Stray', 'client', 'us-east')`, u.ksid.Bytes(), u.id.Bytes())
		t.Cleanup(func() { c.exec(t, wrong, `DELETE FROM auth.users WHERE ksid = $1`, u.ksid.Bytes()) })
		rep := c.audit(t, c.topo, Options{})
		got := offendersOf(rep, WrongShard)
		if rep.Verdict != Violations || rep.Totals.ByClass[WrongShard] != 1 || rep.Totals.ByClass[WrongRegion] != 0 || len(got) != 1 {
			t.Fatalf("%s: %+v", rep.Summary(), rep.Totals)
		}
		if got[0].BelongsShard != home || got[0].BelongsRegion != "us-east" || got[0].Region != "us-east" {
			t.Fatalf("offender %+v", got[0])
		}

		// While the keyrange is in a move, the same row is the move's copy: reported, not a violation.
		moving := c.topo.Clone()
		for i, a := range moving.KeyRanges {
			if a.Shard == home {
				moving.KeyRanges[i].State = topology.Moving
			}
		}
		rep = c.audit(t, moving, Options{})
		if rep.Verdict != Clean || rep.Totals.ByClass[InMove] != 1 || rep.Totals.Violations != 0 {
			t.Fatalf("during a move: %s: %+v", rep.Summary(), rep.Totals)
		}
	})

	t.Run("auth.users.region must name the region that holds the row", func(t *testing.T) {
		u := c.users[1]
		shard := c.shardOf(t, u.ksid)
		c.exec(t, shard, `UPDATE auth.users SET region = 'eu-west' WHERE ksid = $1`, u.ksid.Bytes())
		t.Cleanup(func() {
			c.exec(t, shard, `UPDATE auth.users SET region = $2 WHERE ksid = $1`, u.ksid.Bytes(), u.region)
		})
		rep := c.audit(t, c.topo, Options{})
		got := offendersOf(rep, RegionLabel)
		if rep.Verdict != Violations || len(got) != 1 || got[0].Note != "region=eu-west" {
			t.Fatalf("%s: %+v", rep.Summary(), got)
		}
	})

	t.Run("a claim the directory would not find is misplaced", func(t *testing.T) {
		u := c.users[2]
		h := sha256.Sum256([]byte("someone-else@example.test"))
		want, _ := claimKeyspaceID(c.topo, h[:])
		// The right hash bits under the wrong region's code, on that region's shard.
		wrongRegion := shardkey.Region(0x20)
		if want.Region() == wrongRegion {
			wrongRegion = 0x40
		}
		k := want.WithRegion(wrongRegion)
		shard := c.shardOf(t, k)
		c.exec(t, shard, `INSERT INTO auth.email_claims (ksid, email_hash, user_id, home_region) VALUES ($1, $2, $3, $4)`, k.Bytes(), h[:], u.id.Bytes(), u.region)
		t.Cleanup(func() { c.exec(t, shard, `DELETE FROM auth.email_claims WHERE ksid = $1`, k.Bytes()) })
		rep := c.audit(t, c.topo, Options{})
		got := offendersOf(rep, ClaimMisplaced)
		if rep.Verdict != Violations || rep.Totals.Violations != 1 || len(got) != 1 || got[0].BelongsShard != c.shardOf(t, want) {
			t.Fatalf("%s: %+v", rep.Summary(), got)
		}
	})

	t.Run("a pin: rows under the relocated-from ksid until it finishes, then clean", func(t *testing.T) {
		u := c.users[3] // us-east, pinned to eu-west
		newK := u.ksid.WithRegion(0x40)
		pinned := c.topo.Clone()
		pinned.Version++
		pinned.Relocations = append(pinned.Relocations, topology.Relocation{From: u.ksid, To: newK})
		from, to := c.shardOf(t, u.ksid), c.shardOf(t, newK)

		// The relocation map is flipped but nothing was copied: every row of the user is stale, and
		// so is the directory's home_region.
		rep := c.audit(t, pinned, Options{})
		if rep.Totals.ByClass[Relocated] != rowsPerUser || rep.Totals.ByClass[ClaimStale] != 1 || rep.Totals.Violations != rowsPerUser+1 {
			t.Fatalf("before the copy: %s: %+v", rep.Summary(), rep.Totals)
		}
		for _, o := range offendersOf(rep, Relocated) {
			if o.KeyspaceID != u.ksid.String() || o.Region != "us-east" || o.BelongsRegion != "eu-west" || o.BelongsShard != to {
				t.Errorf("relocated offender %+v", o)
			}
		}
		if st := offendersOf(rep, ClaimStale); len(st) != 1 || st[0].BelongsRegion != "eu-west" || !strings.Contains(st[0].Note, "home_region=us-east") {
			t.Fatalf("stale claim %+v", st)
		}

		// Copied under the new ksid, the old rows still there: the pin did not finish.
		c.put(t, to, u, newK, c.users[0].id)
		rep = c.audit(t, pinned, Options{})
		if rep.Totals.ByClass[Relocated] != rowsPerUser || rep.Totals.ByClass[WrongRegion] != 0 {
			t.Fatalf("after the copy: %s: %+v", rep.Summary(), rep.Totals)
		}

		// Old rows deleted and the directory updated: the audit proves the pin.
		c.exec(t, from, `DELETE FROM auth.users WHERE ksid = $1`, u.ksid.Bytes())
		c.exec(t, from, `DELETE FROM core.audit_log WHERE ksid = $1`, u.ksid.Bytes())
		h := sha256.Sum256([]byte(u.email))
		claimK, _ := claimKeyspaceID(c.topo, h[:])
		c.exec(t, c.shardOf(t, claimK), `UPDATE auth.email_claims SET home_region = 'eu-west' WHERE email_hash = $1`, h[:])
		rep = c.audit(t, pinned, Options{})
		if rep.Verdict != Clean || rep.Totals.Rows != seeded {
			t.Fatalf("after the pin: %s: %+v", rep.Summary(), rep.Totals)
		}
		// Against the topology without the relocation, the copied rows are an ordinary eu-west user's,
		// but the directory now names a home the user's ID does not lead to.
		rep = c.audit(t, c.topo, Options{})
		if rep.Totals.Violations != 1 || rep.Totals.ByClass[ClaimStale] != 1 {
			t.Fatalf("pinned rows against the old topology: %s", rep.Summary())
		}
		// Undo, for the subtests that follow.
		c.exec(t, to, `DELETE FROM auth.users WHERE ksid = $1`, newK.Bytes())
		c.exec(t, to, `DELETE FROM core.audit_log WHERE ksid = $1`, newK.Bytes())
		c.exec(t, c.shardOf(t, claimK), `UPDATE auth.email_claims SET home_region = 'us-east' WHERE email_hash = $1`, h[:])
		c.put(t, from, u, u.ksid, c.users[len(c.users)-1].id)
	})

	t.Run("an unreachable shard makes the audit incomplete", func(t *testing.T) {
		down := c.topo.Clone()
		down.Shards[4].Conn.Port = 1 // nothing listens there
		dc := clusterOn(t, down)
		rep, err := Audit(context.Background(), down, dc.pools, Options{PerShardTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Verdict != Incomplete || rep.Totals.ShardsFailed != 1 || !slices.Equal(rep.FailedShards(), []string{down.Shards[4].Name}) {
			t.Fatalf("%s: %+v", rep.Summary(), rep.Totals)
		}
		if s := rep.Summary(); !strings.HasPrefix(s, "incomplete") || !strings.Contains(s, down.Shards[4].Name) {
			t.Fatalf("summary %q", s)
		}
		// A deadline is a failure too, never a clean shard.
		rep, _ = Audit(context.Background(), c.topo, c.pools, Options{PerShardTimeout: time.Nanosecond})
		if rep.Verdict != Incomplete || rep.Totals.ShardsFailed != 6 {
			t.Fatalf("with a 1ns deadline: %s", rep.Summary())
		}
	})

	t.Run("the report is JSON with the topology version, the times and the totals", func(t *testing.T) {
		data, err := json.Marshal(c.audit(t, c.topo, Options{}))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"topology_version", "started_at", "finished_at", "verdict", "totals", "shards", "rules", "exemptions"} {
			if _, ok := m[k]; !ok {
				t.Errorf("no %q in %s", k, data)
			}
		}
	})
}

// A table without a ksid-first primary key cannot be audited: the shard is incomplete, not clean.
func TestUnauditableTableMakesTheShardIncomplete(t *testing.T) {
	c := newCluster(t)
	c.exec(t, "ap-south-2", `CREATE TABLE core.stray (id bigint PRIMARY KEY, ksid bytea)`)
	rep := c.audit(t, c.topo, Options{})
	if rep.Verdict != Incomplete || !slices.Equal(rep.FailedShards(), []string{"ap-south-2"}) {
		t.Fatalf("%s", rep.Summary())
	}
	for _, s := range rep.Shards {
		if s.Shard == "ap-south-2" && !strings.Contains(s.Error, "core.stray") {
			t.Fatalf("error %q does not name the table", s.Error)
		}
	}
}

// The claim rule in SQL agrees with claimKeyspaceID over many hashes, and finds every claim put
// one region off.
func TestClaimRuleInSQL(t *testing.T) {
	c := newCluster(t)
	const n = 300
	var off int
	for i := range n {
		h := sha256.Sum256(fmt.Appendf(nil, "claim-%d@example.test", i))
		k, _ := claimKeyspaceID(c.topo, h[:])
		if i%10 == 0 { // the same shard, a neighbouring hash: placement holds, the derivation does not
			k ^= 1
			off++
		}
		id, _ := c.ids.New(shardkey.KindUser, k)
		reg, _ := c.topo.RegionByCode(id.KeyspaceID().Region())
		c.exec(t, c.shardOf(t, k), `INSERT INTO auth.email_claims (ksid, email_hash, user_id, home_region) VALUES ($1, $2, $3, $4)`, k.Bytes(), h[:], id.Bytes(), reg.Name)
	}
	rep := c.audit(t, c.topo, Options{Limit: 1000})
	if rep.Totals.Rows != n || rep.Totals.ByClass[ClaimMisplaced] != int64(off) || rep.Totals.Violations != int64(off) {
		t.Fatalf("%s: %+v", rep.Summary(), rep.Totals)
	}
}
