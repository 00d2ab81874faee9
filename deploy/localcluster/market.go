package localcluster

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// The demo's generated marketplace: enough freelancers and jobs in every region that the matching
// engine has something to rank. Skills come in clusters that occur together (a backend developer
// lists go and postgresql, seldom figma), the more popular skills of a cluster more often, with now
// and then one from a neighbouring cluster; countries, rates and budgets follow the region. A fixed
// seed makes the same people and jobs on every run, so seeding again finds them all.
const (
	demoMarketSeed           = 20261201
	demoFreelancersPerRegion = 12
	demoJobsPerRegion        = 5
	demoClientsPerRegion     = 2
	demoMarketDomain         = "market.demo.8thdegree.test"
)

// demoSkillCluster is a family of skills that occur together, most popular first.
type demoSkillCluster struct {
	role      string // the headline's noun
	work      string // what a job of the cluster asks for
	skills    []string
	neighbour int // the cluster a second speciality most often comes from
}

var demoSkillClusters = []demoSkillCluster{
	{"Backend developer", "backend services", []string{"go", "postgresql", "redis", "rest api", "grpc", "kafka", "java", "microservices"}, 4},
	{"Frontend developer", "a web front end", []string{"react", "typescript", "javascript", "css", "next.js", "vue", "tailwind", "accessibility"}, 5},
	{"Data engineer", "data pipelines", []string{"python", "sql", "spark", "airflow", "dbt", "pandas", "bigquery", "etl"}, 3},
	{"Machine learning engineer", "a machine learning model", []string{"python", "machine learning", "pytorch", "nlp", "scikit-learn", "llm", "mlops", "statistics"}, 2},
	{"DevOps engineer", "infrastructure and deployment", []string{"kubernetes", "docker", "terraform", "aws", "linux", "prometheus", "ci/cd", "helm"}, 0},
	{"Product designer", "product design", []string{"figma", "ui design", "ux research", "prototyping", "design systems", "wireframing"}, 1},
}

// demoMarketRegion is a region of the demo with the countries its people live in, a typical hourly
// rate and the currency its clients budget in.
type demoMarketRegion struct {
	name      string
	countries []string
	rate      float64
	currency  string
}

var demoMarketRegions = []demoMarketRegion{
	{"us-east", []string{"US", "CA", "BR", "MX"}, 80, "USD"},
	{"eu-west", []string{"DE", "FR", "GB", "NL", "PL", "ES"}, 65, "EUR"},
	{"ap-south", []string{"IN", "SG", "AU", "ID"}, 40, "USD"},
}

var demoFirstNames = []string{"Ada", "Ravi", "Lena", "Tomas", "Mei", "Kwame", "Sofia", "Jonas", "Aiko", "Omar",
	"Priya", "Lucas", "Zanele", "Mateo", "Yuki", "Amara", "Felix", "Ines", "Arjun", "Nora"}

var demoLastNames = []string{"Okafor", "Schmidt", "Tanaka", "Silva", "Novak", "Kumar", "Dubois", "Chen", "Garcia",
	"Andersen", "Mensah", "Rossi", "Kowalski", "Haddad", "Lindqvist", "Nakamura", "Moreau", "Singh", "Costa", "Ito"}

var demoJobPurposes = []string{"for a new product", "to extend an existing system", "for a short audit",
	"for a migration", "for a long-term engagement", "to help a small team ship", "for a prototype"}

var demoSectors = []string{"fintech", "health", "logistics", "e-commerce", "media", "education", "travel", "energy"}

// demoMarket generates the market of seed: demoFreelancersPerRegion freelancers with profiles and
// demoClientsPerRegion clients sharing demoJobsPerRegion jobs in every region, as demo users (the
// regions interleaved, so that a region's budget for anonymous requests refills while the others
// register).
func demoMarket(seed uint64) []demoUser {
	rng := rand.New(rand.NewPCG(seed, 0x6d61726b6574))
	// Distinct names: a shuffle of every first and last name pair.
	pairs := rng.Perm(len(demoFirstNames) * len(demoLastNames))
	name := func(i int) (string, string) {
		p := pairs[i]
		first, last := demoFirstNames[p/len(demoLastNames)], demoLastNames[p%len(demoLastNames)]
		return first + " " + last, strings.ToLower(first + "." + last + "@" + demoMarketDomain)
	}
	var users []demoUser
	for j := range demoFreelancersPerRegion {
		for r, reg := range demoMarketRegions {
			n := len(users)
			full, email := name(n)
			// Every cluster twice in every region, each region starting at another one.
			c := (j + 2*r) % len(demoSkillClusters)
			users = append(users, demoUser{Email: email, Name: full, Role: "freelancer", Region: reg.name, Profile: demoProfile(rng, c, reg)})
		}
	}
	clients := make([][]int, len(demoMarketRegions)) // the users' indexes of each region's clients
	for range demoClientsPerRegion {
		for r, reg := range demoMarketRegions {
			full, email := name(len(users))
			clients[r] = append(clients[r], len(users))
			users = append(users, demoUser{Email: email, Name: full, Role: "client", Region: reg.name})
		}
	}
	for r, reg := range demoMarketRegions {
		for j := range demoJobsPerRegion {
			c := (j*5 + r) % len(demoSkillClusters)
			owner := &users[clients[r][j%len(clients[r])]]
			owner.Jobs = append(owner.Jobs, demoJob(rng, c, reg))
		}
	}
	return users
}

// demoSkills draws n distinct skills of cluster c, the popular ones (earlier in the list) more often.
func demoSkills(rng *rand.Rand, c, n int) []string {
	pool := demoSkillClusters[c].skills
	weights := make([]float64, len(pool))
	for i := range pool {
		weights[i] = 1 / float64(i+1)
	}
	var out []string
	for len(out) < n && len(out) < len(pool) {
		total := 0.0
		for _, w := range weights {
			total += w
		}
		x := rng.Float64() * total
		for i, w := range weights {
			if x -= w; x < 0 || i == len(weights)-1 && w > 0 {
				out = append(out, pool[i])
				weights[i] = 0
				break
			}
		}
	}
	return out
}

// withSkill appends s to skills unless it is there already.
func withSkill(skills []string, s string) []string {
	for _, k := range skills {
		if k == s {
			return skills
		}
	}
	return append(skills, s)
}

// demoProfile is a freelancer of cluster c in region reg: three to five skills of the cluster, one in
// three with a skill of the neighbouring cluster, a rate around the region's and mostly available.
func demoProfile(rng *rand.Rand, c int, reg demoMarketRegion) map[string]any {
	cl := demoSkillClusters[c]
	skills := demoSkills(rng, c, 3+rng.IntN(3))
	if rng.IntN(3) == 0 {
		skills = withSkill(skills, demoSkills(rng, cl.neighbour, 1)[0])
	}
	years := 2 + rng.IntN(14)
	rate := math.Round(reg.rate * (0.6 + 0.8*rng.Float64()))
	return map[string]any{
		"headline": fmt.Sprintf("%s: %s and %s", cl.role, skills[0], skills[1]),
		"bio": fmt.Sprintf("<p>%d years of %s, most recently for %s teams.</p>", years, strings.Join(skills, ", "),
			demoSectors[rng.IntN(len(demoSectors))]),
		"skills":      skills,
		"hourly_rate": rate,
		"country":     reg.countries[rng.IntN(len(reg.countries))],
		"available":   rng.IntN(8) != 0,
	}
}

// demoJob is a job of cluster c posted in region reg: two to four of the cluster's skills, an hourly
// budget around the region's rate, mostly remote.
func demoJob(rng *rand.Rand, c int, reg demoMarketRegion) map[string]any {
	cl := demoSkillClusters[c]
	skills := demoSkills(rng, c, 2+rng.IntN(3))
	purpose := demoJobPurposes[rng.IntN(len(demoJobPurposes))]
	lo := math.Round(reg.rate * (0.5 + 0.4*rng.Float64()))
	hi := math.Round(lo * (1.3 + 0.6*rng.Float64()))
	remote := rng.IntN(4) != 0
	where := "Remote work is fine."
	if !remote {
		where = "On site."
	}
	return map[string]any{
		"title":       fmt.Sprintf("%s %s", strings.ToUpper(cl.work[:1])+cl.work[1:], purpose),
		"description": fmt.Sprintf("<p>Our %s company needs help with %s %s: %s. %s</p>", demoSectors[rng.IntN(len(demoSectors))], cl.work, purpose, strings.Join(skills, ", "), where),
		"skills":      skills,
		"budget_min":  lo,
		"budget_max":  hi,
		"currency":    reg.currency,
		"remote":      remote,
	}
}

// demoMarketUsers are the generated market's users; demoAllUsers adds them to the named demo users.
var demoMarketUsers = demoMarket(demoMarketSeed)

func demoAllUsers() []demoUser {
	return append(append([]demoUser(nil), demoUsers...), demoMarketUsers...)
}

// demoMarketCounts counts the generated market's freelancers and jobs.
func demoMarketCounts() (freelancers, jobs int) {
	for _, u := range demoMarketUsers {
		if u.Role == "freelancer" {
			freelancers++
		}
		jobs += len(u.Jobs)
	}
	return freelancers, jobs
}
