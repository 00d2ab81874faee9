package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/shardmgr/residency"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// What real API nodes write passes the residency audit: users registered in every region, their
// email claims placed by the directory (the audit's copy of the directory's rule must agree with
// the directory itself), the users' region column.
func TestE2EResidencyAuditOfWhatTheNodesWrote(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real API nodes")
	}
	c := cluster.Start(t)
	const perRegion = 8
	for _, r := range c.Topology.Regions {
		for i := range perRegion {
			if _, err := cluster.Register(c.NodeClient(t, r.Name), c.Nodes[r.Name], fmt.Sprintf("audit-%d@%s.example.test", i, r.Name), "freelancer", r.Name); err != nil {
				t.Fatalf("register in %s: %v", r.Name, err)
			}
		}
	}
	pools, err := shardpool.New(shardpool.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pools.Close()
	if err := pools.Apply(context.Background(), c.Topology); err != nil {
		t.Fatal(err)
	}
	rep, err := residency.Audit(context.Background(), c.Topology, pools, residency.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != residency.Clean {
		t.Fatalf("%s: %+v", rep.Summary(), rep.Shards)
	}
	counts := map[string]int64{}
	for _, s := range rep.Shards {
		for _, tr := range s.Tables {
			counts[tr.Table] += tr.Rows
		}
	}
	n := int64(perRegion * len(c.Topology.Regions))
	if counts["auth.users"] != n || counts["auth.email_claims"] != n {
		t.Fatalf("audited %d users and %d claims, registered %d", counts["auth.users"], counts["auth.email_claims"], n)
	}
}
