package synth

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Options shape a market. Zero fields take the DefaultOptions value.
type Options struct {
	Freelancers int           // number of freelancers
	Jobs        int           // number of jobs
	Clusters    int           // skill clusters used, at most len of the built-in catalog (8)
	Dims        int           // embedding dimensions
	Start       time.Time     // jobs are posted in [Start, Start+Span)
	Span        time.Duration //
	Bias        Bias          // none when Strength is 0
}

// Bias lowers what is observed of the freelancers whose group Attr ("country", "region" or a
// self-declared attribute such as "gender") has the value Value: Strength in [0, 1] is the share of
// their opens and hires that clients withhold in Simulate, and scales how much their review history
// is shortened and marked down. It never changes the utility.
type Bias struct {
	Attr, Value string
	Strength    float64
}

// DefaultOptions is a market of 600 freelancers and 300 jobs over 90 days of 2026.
func DefaultOptions() Options {
	return Options{
		Freelancers: 600,
		Jobs:        300,
		Clusters:    len(catalog),
		Dims:        32,
		Start:       time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Span:        90 * 24 * time.Hour,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	o.Freelancers = cmp.Or(o.Freelancers, d.Freelancers)
	o.Jobs = cmp.Or(o.Jobs, d.Jobs)
	o.Clusters = cmp.Or(o.Clusters, d.Clusters)
	o.Dims = cmp.Or(o.Dims, d.Dims)
	if o.Start.IsZero() {
		o.Start = d.Start
	}
	o.Span = cmp.Or(o.Span, d.Span)
	return o
}

// Validate reports the first option out of range, by name. Zero fields are valid (defaults).
func (o Options) Validate() error {
	switch {
	case o.Freelancers < 0:
		return fmt.Errorf("synth: Freelancers must be ≥ 0, got %d", o.Freelancers)
	case o.Jobs < 0:
		return fmt.Errorf("synth: Jobs must be ≥ 0, got %d", o.Jobs)
	case o.Clusters < 0 || o.Clusters > len(catalog):
		return fmt.Errorf("synth: Clusters must be in [0, %d], got %d", len(catalog), o.Clusters)
	case o.Dims < 0:
		return fmt.Errorf("synth: Dims must be ≥ 0, got %d", o.Dims)
	case o.Span < 0:
		return fmt.Errorf("synth: Span must be ≥ 0, got %v", o.Span)
	case !(o.Bias.Strength >= 0 && o.Bias.Strength <= 1):
		return fmt.Errorf("synth: Bias.Strength must be in [0, 1], got %v", o.Bias.Strength)
	case o.Bias.Strength > 0 && (o.Bias.Attr == "" || o.Bias.Value == ""):
		return fmt.Errorf("synth: Bias.Attr and Bias.Value must name a group when Bias.Strength is set")
	}
	return nil
}

// Freelancer is one synthetic profile. Quality is hidden from the engine; the rest is what a profile
// and its verified reviews would show.
type Freelancer struct {
	ID       string
	Name     string
	Headline string
	Bio      string
	Country  string // ISO 3166-1 alpha-2
	Region   string // the deployment region its country belongs to
	// Declared are self-declared attributes ("gender"), absent when the freelancer declared none.
	Declared   map[string]string
	Skills     []string
	Cluster    int     // primary skill cluster
	Secondary  int     // second cluster, −1 for none
	HourlyRate float64 // USD
	Available  bool
	Quality    float64 // latent, in [0, 1]: hidden
	Reviews    int     // verified reviews observed
	AvgRating  float64 // their mean, 1–5 (0 with no reviews)
	Vec        []float32
}

// Groups are the freelancer's groups for fairness: country, region and the declared attributes.
func (f Freelancer) Groups() map[string]string {
	g := map[string]string{"country": f.Country, "region": f.Region}
	for k, v := range f.Declared {
		g[k] = v
	}
	return g
}

// Job is one synthetic job posting. Budgets are hourly, in the rate's unit; BudgetMax 0 is an open
// budget.
type Job struct {
	ID          string
	Title       string
	Description string
	Country     string
	Region      string
	Skills      []string
	Cluster     int
	BudgetMin   float64
	BudgetMax   float64
	Remote      bool
	PostedAt    time.Time
	Vec         []float32
}

// Market is a generated marketplace. Jobs are in the order they were posted.
type Market struct {
	Skills      [][]string // the clusters of skills, most popular first
	Freelancers []Freelancer
	Jobs        []Job
	// Utility is the hidden grade 0–4 of a freelancer for a job.
	Utility func(job, freelancer int) int

	seed      int64
	bias      Bias
	byID      map[string]int
	clusterOf map[string]int
	neighbour []int
	idf       map[string]float64
	skillVec  map[string][]float32
}

// Kinds of random stream: each entity draws from its own, so one change touches nothing else.
const (
	streamSkills uint64 = iota + 1
	streamFreelancer
	streamJob
	streamList
	streamPair
)

func stream(seed int64, kind, i uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), splitmix(kind<<40^i)))
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Generate builds the market of a seed. It panics on options that Validate refuses (a programming
// error, as with regexp.MustCompile); call Validate first on options from outside.
func Generate(seed int64, opts Options) *Market {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	opts = opts.withDefaults()
	m := &Market{seed: seed, bias: opts.Bias, clusterOf: map[string]int{}, skillVec: map[string][]float32{}}
	m.Utility = m.utility
	cl := catalog[:opts.Clusters]
	for k, c := range cl {
		m.Skills = append(m.Skills, slices.Clone(c.skills))
		for _, s := range c.skills {
			m.clusterOf[s] = k
		}
		nb := c.neighbour
		if nb >= len(cl) {
			nb = (k + 1) % len(cl)
		}
		m.neighbour = append(m.neighbour, nb)
	}
	m.embedSkills(seed, opts.Dims)

	m.byID = map[string]int{}
	for i := range opts.Freelancers {
		m.Freelancers = append(m.Freelancers, m.freelancer(stream(seed, streamFreelancer, uint64(i)), i, opts.Dims))
		m.byID[m.Freelancers[i].ID] = i
	}
	for i := range opts.Jobs {
		m.Jobs = append(m.Jobs, m.job(stream(seed, streamJob, uint64(i)), opts))
	}
	slices.SortStableFunc(m.Jobs, func(a, b Job) int { return a.PostedAt.Compare(b.PostedAt) })
	for i := range m.Jobs {
		m.Jobs[i].ID = fmt.Sprintf("job-%04d", i+1)
	}

	// Rarer skills weigh more in coverage, as the engine weighs them (IDF over profiles).
	df := map[string]int{}
	for _, f := range m.Freelancers {
		for _, s := range f.Skills {
			df[s]++
		}
	}
	m.idf = map[string]float64{}
	for s := range m.clusterOf {
		m.idf[s] = math.Log(1 + float64(len(m.Freelancers)+1)/float64(df[s]+1))
	}
	return m
}

// embedSkills places cluster centres at random (a neighbour's centre pulled towards its neighbour)
// and each skill near its centre.
func (m *Market) embedSkills(seed int64, dims int) {
	rng := stream(seed, streamSkills, 0)
	raw := make([][]float64, len(m.Skills))
	for k := range raw {
		raw[k] = gaussian(rng, dims, 1)
	}
	noise := 0.8 / math.Sqrt(float64(dims))
	for k, skills := range m.Skills {
		centre := normalise(add(raw[k], raw[m.neighbour[k]], 0.5))
		for _, s := range skills {
			m.skillVec[s] = toFloat32(normalise(add(centre, gaussian(rng, dims, noise), 1)))
		}
	}
}

// embed is the vector of a document: its skills' sum plus noise that stands for its free text.
func (m *Market) embed(rng *rand.Rand, skills []string, dims int) []float32 {
	v := gaussian(rng, dims, 0.35/math.Sqrt(float64(dims))*math.Sqrt(float64(len(skills))))
	for _, s := range skills {
		for d, x := range m.skillVec[s] {
			v[d] += float64(x)
		}
	}
	return toFloat32(normalise(v))
}

func (m *Market) freelancer(rng *rand.Rand, i, dims int) Freelancer {
	f := Freelancer{ID: fmt.Sprintf("fl-%04d", i+1), Secondary: -1}
	r := pickRegion(rng)
	f.Region, f.Country = r.name, r.countries[rng.IntN(len(r.countries))]
	f.Name = firstNames[rng.IntN(len(firstNames))] + " " + lastNames[rng.IntN(len(lastNames))]
	if rng.Float64() < 0.6 {
		g := "man"
		switch u := rng.Float64(); {
		case u < 0.45:
			g = "woman"
		case u < 0.5:
			g = "nonbinary"
		}
		f.Declared = map[string]string{"gender": g}
	}
	f.Cluster = rng.IntN(len(m.Skills))
	n := 3 + rng.IntN(6)
	nPrimary := n
	if rng.Float64() < 0.35 {
		f.Secondary = m.neighbour[f.Cluster]
		if rng.Float64() < 0.3 {
			f.Secondary = rng.IntN(len(m.Skills))
		}
		if f.Secondary == f.Cluster {
			f.Secondary = -1
		} else {
			nPrimary = n - 1 - rng.IntN(2)
		}
	}
	f.Skills = pickSkills(rng, m.Skills[f.Cluster], nPrimary)
	if f.Secondary >= 0 {
		f.Skills = append(f.Skills, pickSkills(rng, m.Skills[f.Secondary], n-nPrimary)...)
	}
	f.Quality = (rng.Float64() + rng.Float64() + rng.Float64()) / 3
	f.HourlyRate = math.Round(r.rate * math.Exp(0.3*rng.NormFloat64()) * (0.8 + 0.5*f.Quality))
	f.Available = rng.Float64() < 0.85

	// A review history: how many, and each review's noise, are drawn whatever the bias, so a biased
	// market differs from an unbiased one of the same seed only in what the bias changes.
	nReviews := min(int(math.Exp(1.5+rng.NormFloat64())), 60)
	noise := make([]float64, nReviews)
	for k := range noise {
		noise[k] = 0.8 * rng.NormFloat64()
	}
	shift := 0.0
	if m.biased(f) {
		nReviews = int(math.Round(float64(nReviews) * (1 - 0.5*m.bias.Strength)))
		shift = 1.5 * m.bias.Strength
	}
	sum := 0.0
	for _, e := range noise[:nReviews] {
		sum += math.Max(1, math.Min(5, math.Round(1+4*f.Quality+e-shift)))
	}
	f.Reviews = nReviews
	if nReviews > 0 {
		f.AvgRating = sum / float64(nReviews)
	}
	f.Vec = m.embed(rng, f.Skills, dims)

	c := catalog[f.Cluster]
	level := "Junior"
	switch {
	case f.Quality > 0.66:
		level = "Senior"
	case f.Quality > 0.4:
		level = "Experienced"
	}
	f.Headline = fmt.Sprintf("%s %s", level, c.role)
	f.Bio = fmt.Sprintf("%s, %s based in %s. I work mostly with %s.", f.Name, c.role, f.Country, joinAnd(f.Skills))
	return f
}

func (m *Market) job(rng *rand.Rand, opts Options) Job {
	j := Job{}
	r := pickRegion(rng)
	j.Region, j.Country = r.name, r.countries[rng.IntN(len(r.countries))]
	j.Cluster = rng.IntN(len(m.Skills))
	n := 2 + rng.IntN(4)
	if rng.Float64() < 0.3 {
		j.Skills = append(pickSkills(rng, m.Skills[j.Cluster], n-1), pickSkills(rng, m.Skills[m.neighbour[j.Cluster]], 1)...)
	} else {
		j.Skills = pickSkills(rng, m.Skills[j.Cluster], n)
	}
	j.Remote = rng.Float64() < 0.8
	budget := r.rate * math.Exp(0.35*rng.NormFloat64())
	if rng.Float64() >= 0.1 {
		j.BudgetMax = math.Round(budget)
		j.BudgetMin = math.Round(0.6 * budget)
	}
	j.PostedAt = opts.Start.Add(time.Duration(rng.Float64() * float64(opts.Span))).Truncate(time.Second)
	j.Vec = m.embed(rng, j.Skills, opts.Dims)
	c := catalog[j.Cluster]
	j.Title = fmt.Sprintf("%s %s %s", titleCase(j.Skills[0]), c.role, jobPurposes[rng.IntN(len(jobPurposes))])
	where := "Remote."
	if !j.Remote {
		where = "On site in " + j.Country + "."
	}
	j.Description = fmt.Sprintf("We are looking for a %s. Wanted: %s. %s", c.role, joinAnd(j.Skills), where)
	return j
}

// FreelancerIndex finds a freelancer by ID (an Example's ItemID), for a fairness gate that needs
// the groups of what a model ranks.
func (m *Market) FreelancerIndex(id string) (int, bool) {
	i, ok := m.byID[id]
	return i, ok
}

// biased reports whether the market's bias is against f.
func (m *Market) biased(f Freelancer) bool {
	return m.bias.Strength > 0 && f.Groups()[m.bias.Attr] == m.bias.Value
}

func pickRegion(rng *rand.Rand) region {
	u := rng.Float64()
	for _, r := range regions {
		if u < r.share {
			return r
		}
		u -= r.share
	}
	return regions[len(regions)-1]
}

// pickSkills draws n distinct skills of a cluster, popular ones (earlier) more often (Zipf-like), so
// that the popular skills of a cluster occur together.
func pickSkills(rng *rand.Rand, skills []string, n int) []string {
	n = min(n, len(skills))
	w := make([]float64, len(skills))
	for i := range w {
		w[i] = 1 / math.Pow(float64(i+1), 0.8)
	}
	var out []string
	for range n {
		total := 0.0
		for _, x := range w {
			total += x
		}
		u := rng.Float64() * total
		for i, x := range w {
			if x == 0 {
				continue
			}
			if u < x || i == len(w)-1 {
				out = append(out, skills[i])
				w[i] = 0
				break
			}
			u -= x
		}
	}
	return out
}

func gaussian(rng *rand.Rand, dims int, sigma float64) []float64 {
	v := make([]float64, dims)
	for d := range v {
		v[d] = sigma * rng.NormFloat64()
	}
	return v
}

// add returns a + s·b.
func add(a, b []float64, s float64) []float64 {
	out := make([]float64, len(a))
	for d := range a {
		out[d] = a[d] + s*b[d]
	}
	return out
}

func normalise(v []float64) []float64 {
	n := 0.0
	for _, x := range v {
		n += x * x
	}
	n = math.Sqrt(n)
	if n == 0 {
		return v
	}
	for d := range v {
		v[d] /= n
	}
	return v
}

func toFloat32(v []float64) []float32 {
	out := make([]float32, len(v))
	for d, x := range v {
		out[d] = float32(x)
	}
	return out
}

func joinAnd(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
