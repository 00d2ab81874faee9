package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/deploy/local"
	localfixture "github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// auditFixture is the example topology in Consul on migrated shards, with one user per shard.
type auditFixture struct {
	f   *localfixture.Fixture
	env map[string]string
	ids *shardkey.Generator
}

func newAuditFixture(t *testing.T) auditFixture {
	t.Helper()
	f := localfixture.New(t, localfixture.Options{Shards: true, Consul: true, MaxConns: 2})
	a := auditFixture{f: f, env: map[string]string{"CONSUL_HTTP_ADDR": f.ConsulAddr, "CONSUL_HTTP_TOKEN_FILE": f.ConsulAgent.TokenFile(local.RoleShardmgr), "MERIDIAN_TOPOLOGY_KEY": f.Key}, ids: shardkey.NewGenerator(time.Now, rand.Reader)}
	for _, kr := range f.Topology.KeyRanges {
		sh, _ := f.Topology.Shard(kr.Shard)
		a.putUser(t, kr.Shard, shardkey.KeyspaceID(kr.Range.Start+1), sh.Region)
	}
	return a
}

// putUser writes a user row under ksid k on shard and returns the row's key as the audit prints it.
func (a auditFixture) putUser(t *testing.T, shard string, k shardkey.KeyspaceID, region string) string {
	t.Helper()
	id, err := a.ids.New(shardkey.KindUser, k)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), a.f.DSN[shard])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	email := fmt.Sprintf("%s@example.test", k)
	if _, err := conn.Exec(context.Background(), `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, $3, $3, 'A', 'client', $4)`,
		k.Bytes(), id.Bytes(), email, region); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s|%x", k, id.Bytes())
}

func TestResidencyAudit(t *testing.T) {
	a := newAuditFixture(t)

	t.Run("clean", func(t *testing.T) {
		r := shardmgr(t, a.env, "residency", "audit")
		if r.code != ExitOK || !strings.Contains(r.stdout, "verdict: clean: 6 rows on 6 shards") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"residency audit of topology version 1 (every region)", "REGION", "eu-west-2", "auth.users", "(23 empty tables)", "totals: 6 shards (0 unreadable), 144 tables, 6 rows, 0 violations"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("no %q in\n%s", want, r.stdout)
			}
		}
		r = shardmgr(t, a.env, "residency", "audit", "--region", "ap-south")
		if r.code != ExitOK || !strings.Contains(r.stdout, "(region ap-south)") || strings.Contains(r.stdout, "us-east-1") {
			t.Fatalf("--region: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"residency", "audit", "--limit", "0"},
			{"residency", "audit", "--region", "mars"},
			{"residency", "audit", "extra"},
			{"residency", "audit", "--shard-timeout", "0s"},
			{"--output", "xml", "residency", "audit"},
		} {
			if r := shardmgr(t, a.env, args...); r.code != ExitUsage || !strings.HasPrefix(r.stderr, "shardmgr: ") {
				t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
			}
		}
	})

	// A us-east user's row on an eu-west shard.
	k := shardkey.MustParseKeyRange("20-21").Start + 0x77
	planted := a.putUser(t, "eu-west-2", shardkey.KeyspaceID(k), "us-east")

	t.Run("a planted row is found and listed, exit 1", func(t *testing.T) {
		r := shardmgr(t, a.env, "residency", "audit")
		if r.code != ExitError || !strings.Contains(r.stderr, "residency audit violations: 1 of 7 rows break a rule (wrong_region 1)") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var line string
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.Contains(l, planted) {
				line = l
			}
		}
		if f := strings.Fields(line); len(f) < 6 || f[0] != "eu-west-2" || f[1] != "auth.users" || f[2] != "wrong_region" || f[4] != "us-east" || f[5] != "us-east/us-east-1" {
			t.Fatalf("offender line %q in\n%s", line, r.stdout)
		}
	})

	t.Run("json and --report", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "audit.json")
		r := shardmgr(t, a.env, "residency", "audit", "-o", "json", "--report", file)
		if r.code != ExitError {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		saved, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(saved) != r.stdout {
			t.Fatal("the report file is not the JSON printed")
		}
		var rep struct {
			TopologyVersion uint64    `json:"topology_version"`
			StartedAt       time.Time `json:"started_at"`
			FinishedAt      time.Time `json:"finished_at"`
			Verdict         string    `json:"verdict"`
			Totals          struct {
				Shards, ShardsFailed, Tables int
				Rows, Violations             int64
				ByClass                      map[string]int64 `json:"by_class"`
			} `json:"totals"`
			Shards []struct {
				Shard, Region string
				KeyRanges     []string `json:"keyranges"`
				Tables        []struct {
					Table      string
					Rows       int64
					Violations int64
					Offenders  []struct{ Class, Key, Ksid, Region, BelongsShard string } `json:"offenders"`
				} `json:"tables"`
			} `json:"shards"`
			Rules      map[string]string `json:"rules"`
			Exemptions []struct{ Table, Reason string }
		}
		if err := json.Unmarshal(saved, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.TopologyVersion != 1 || rep.Verdict != "violations" || rep.StartedAt.IsZero() || rep.FinishedAt.Before(rep.StartedAt) {
			t.Fatalf("header %+v", rep)
		}
		if rep.Totals.Shards != 6 || rep.Totals.Rows != 7 || rep.Totals.Violations != 1 || rep.Totals.ByClass["wrong_region"] != 1 || len(rep.Shards) != 6 || len(rep.Rules) == 0 || len(rep.Exemptions) == 0 {
			t.Fatalf("totals %+v, %d shards, %d rules", rep.Totals, len(rep.Shards), len(rep.Rules))
		}
		var found bool
		for _, s := range rep.Shards {
			for _, tb := range s.Tables {
				for _, o := range tb.Offenders {
					found = found || (s.Shard == "eu-west-2" && tb.Table == "auth.users" && o.Key == planted && o.Class == "wrong_region" && o.Region == "us-east")
				}
			}
		}
		if !found {
			t.Fatalf("the planted row is not in the report:\n%s", saved)
		}
	})

	t.Run("an unreachable shard: incomplete, exit 1", func(t *testing.T) {
		if _, err := a.f.Store.Modify(context.Background(), func(t *topology.Topology) error {
			t.Shards[0].Conn.Port = 1
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		r := shardmgr(t, a.env, "residency", "audit", "--shard-timeout", "5s")
		if r.code != ExitError || !strings.Contains(r.stderr, "residency audit incomplete: 1 of 6 shards could not be read (us-east-1)") ||
			!strings.Contains(r.stderr, "already show 1 violations") || !strings.Contains(r.stdout, "unreadable: ") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}
