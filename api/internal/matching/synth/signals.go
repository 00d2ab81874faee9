package synth

import (
	"cmp"
	"math"
	"slices"
)

// Rating prior of the Bayesian rating signal: a freelancer with few reviews is pulled towards a
// mean of 3.5 as if they had 5 more reviews of that mean (the score package's constants).
const (
	ratingPrior  = 3.5
	ratingWeight = 5
)

// Features are the five scoring signals of a freelancer for a job, each in [0, 1], in the order
// Similarity, SkillCoverage, Rating, PriceFit, Availability (learn.FeatureNames), computed as the
// engine computes them from what it can see:
//   - Similarity: the cosine of the job's and the profile's embeddings, clamped at 0;
//   - SkillCoverage: the share of the job's skills the freelancer has, each skill weighted by its
//     IDF over all profiles;
//   - Rating: the Bayesian mean (C·m + n·avg)/(C + n) of the reviews, m 3.5, C 5, mapped (r−1)/4;
//   - PriceFit: 1 with an open budget or a rate within it, falling linearly to 0 at twice its maximum;
//   - Availability: 1 when available, else 0.
func (m *Market) Features(job, freelancer int) []float64 {
	j, f := &m.Jobs[job], &m.Freelancers[freelancer]
	sim := 0.0
	for d := range j.Vec {
		sim += float64(j.Vec[d]) * float64(f.Vec[d])
	}
	has := set(f.Skills)
	covered, total := 0.0, 0.0
	for _, s := range j.Skills {
		total += m.idf[s]
		if has[s] {
			covered += m.idf[s]
		}
	}
	cov := 0.0
	if total > 0 {
		cov = covered / total
	}
	r := (ratingWeight*ratingPrior + float64(f.Reviews)*f.AvgRating) / float64(ratingWeight+f.Reviews)
	avail := 0.0
	if f.Available {
		avail = 1
	}
	return []float64{math.Max(0, sim), cov, (r - 1) / 4, priceFit(f.HourlyRate, j.BudgetMax), avail}
}

func priceFit(rate, budgetMax float64) float64 {
	if budgetMax <= 0 || rate <= budgetMax {
		return 1
	}
	return math.Max(0, 1-(rate-budgetMax)/budgetMax)
}

// utility is the hidden grade: skill overlap with partial credit for a related skill (0.35 for
// another skill of the same cluster, 0.15 of the neighbouring cluster), quality, price fit and a
// fixed noise per pair. An unavailable freelancer, or one in another country for an on-site job, is
// of no use.
func (m *Market) utility(job, freelancer int) int {
	j, f := &m.Jobs[job], &m.Freelancers[freelancer]
	if !f.Available || (!j.Remote && j.Country != f.Country) {
		return 0
	}
	has := set(f.Skills)
	clusters := map[int]bool{}
	for _, s := range f.Skills {
		clusters[m.clusterOf[s]] = true
	}
	skill := 0.0
	for _, s := range j.Skills {
		switch c := m.clusterOf[s]; {
		case has[s]:
			skill++
		case clusters[c]:
			skill += 0.35
		case clusters[m.neighbour[c]]:
			skill += 0.15
		}
	}
	skill /= float64(len(j.Skills))
	u := 2.4*skill + 1.6*f.Quality + 0.9*priceFit(f.HourlyRate, j.BudgetMax) + 0.35*m.pairNoise(job, freelancer)
	switch {
	case u < 2.2:
		return 0
	case u < 2.8:
		return 1
	case u < 3.3:
		return 2
	case u < 3.8:
		return 3
	}
	return 4
}

// pairNoise is a standard normal draw fixed for the pair.
func (m *Market) pairNoise(job, freelancer int) float64 {
	rng := stream(m.seed, streamPair, uint64(job)<<32|uint64(freelancer))
	return rng.NormFloat64()
}

// Candidates are the freelancers the engine may show for a job after its hard filters: available,
// in the job's region (in its country for an on-site job), with a rate at most twice the budget.
// They are in index order.
func (m *Market) Candidates(job int) []int {
	j := &m.Jobs[job]
	var out []int
	for i, f := range m.Freelancers {
		if !f.Available || f.Region != j.Region || (!j.Remote && f.Country != j.Country) {
			continue
		}
		if j.BudgetMax > 0 && f.HourlyRate > 2*j.BudgetMax {
			continue
		}
		out = append(out, i)
	}
	return out
}

// Ranker ranks a job's candidates by the linear score of their Features under weights (best first;
// ties in index order). Rankings are computed once per job and remembered, so the function is
// cheap to call again; it is not safe for concurrent use.
func (m *Market) Ranker(weights []float64) func(job int) []int {
	cache := map[int][]int{}
	return func(job int) []int {
		if r, ok := cache[job]; ok {
			return r
		}
		c := m.Candidates(job)
		score := make(map[int]float64, len(c))
		for _, f := range c {
			s := 0.0
			for d, x := range m.Features(job, f) {
				if d < len(weights) {
					s += x * weights[d]
				}
			}
			score[f] = s
		}
		slices.SortStableFunc(c, func(a, b int) int { return cmp.Compare(score[b], score[a]) })
		cache[job] = c
		return c
	}
}

// BaselineJaccard ranks a job's candidates by the Jaccard overlap of their skills with the job's
// (best first; ties in index order): the engine before embeddings, for comparison.
func BaselineJaccard(m *Market, job int) []int {
	c := m.Candidates(job)
	js := set(m.Jobs[job].Skills)
	score := make(map[int]float64, len(c))
	for _, f := range c {
		inter := 0
		for _, s := range m.Freelancers[f].Skills {
			if js[s] {
				inter++
			}
		}
		union := len(js) + len(m.Freelancers[f].Skills) - inter
		if union > 0 {
			score[f] = float64(inter) / float64(union)
		}
	}
	slices.SortStableFunc(c, func(a, b int) int { return cmp.Compare(score[b], score[a]) })
	return c
}

func set(s []string) map[string]bool {
	out := make(map[string]bool, len(s))
	for _, x := range s {
		out[x] = true
	}
	return out
}
