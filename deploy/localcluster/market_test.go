package localcluster

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The generated market is the same on every run (seeding again finds every user), has the promised
// size in every region, and is drawn from its clusters, countries and budgets.
func TestDemoMarket(t *testing.T) {
	if !reflect.DeepEqual(demoMarket(demoMarketSeed), demoMarketUsers) {
		t.Fatal("the market of one seed differs between two generations")
	}
	if reflect.DeepEqual(demoMarket(demoMarketSeed+1), demoMarketUsers) {
		t.Fatal("another seed makes the same market")
	}
	countries := map[string][]string{}
	for _, r := range demoMarketRegions {
		countries[r.name] = r.countries
	}
	emails := map[string]bool{}
	for _, u := range demoUsers {
		emails[u.Email] = true
	}
	freelancers, jobs := map[string]int{}, map[string]int{}
	for _, u := range demoMarketUsers {
		if emails[u.Email] || !strings.HasSuffix(u.Email, "@"+demoMarketDomain) {
			t.Errorf("email %s repeats or is outside %s", u.Email, demoMarketDomain)
		}
		emails[u.Email] = true
		switch u.Role {
		case "freelancer":
			freelancers[u.Region]++
			p := u.Profile
			skills := p["skills"].([]string)
			if len(skills) < 3 || !slices.Contains(countries[u.Region], p["country"].(string)) || p["hourly_rate"].(float64) <= 0 {
				t.Errorf("profile of %s: %v", u.Email, p)
			}
			// Most skills come from one cluster.
			if best := clusterShare(skills); best < len(skills)-1 {
				t.Errorf("profile of %s mixes clusters: %v", u.Email, skills)
			}
		case "client":
			if u.Profile != nil {
				t.Errorf("client %s has a profile", u.Email)
			}
			for _, j := range u.Jobs {
				jobs[u.Region]++
				skills := j["skills"].([]string)
				if len(skills) < 2 || clusterShare(skills) != len(skills) || j["budget_min"].(float64) <= 0 || j["budget_min"].(float64) > j["budget_max"].(float64) {
					t.Errorf("job of %s: %v", u.Email, j)
				}
			}
		default:
			t.Errorf("%s has role %s", u.Email, u.Role)
		}
	}
	for _, r := range demoMarketRegions {
		if freelancers[r.name] != demoFreelancersPerRegion || jobs[r.name] != demoJobsPerRegion {
			t.Errorf("%s: %d freelancers and %d jobs", r.name, freelancers[r.name], jobs[r.name])
		}
	}
	if f, j := demoMarketCounts(); f != 3*demoFreelancersPerRegion || j != 3*demoJobsPerRegion {
		t.Errorf("counts: %d freelancers, %d jobs", f, j)
	}
}

// clusterShare is how many of skills the cluster holding most of them holds.
func clusterShare(skills []string) int {
	best := 0
	for _, c := range demoSkillClusters {
		n := 0
		for _, s := range skills {
			if slices.Contains(c.skills, s) {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}
