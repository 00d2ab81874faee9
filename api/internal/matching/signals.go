package matching

import "github.com/8thdegree/meridian/api/internal/matching/score"

// units turns cents into the currency's units, as the score package reads amounts.
func units(c *int64) *float64 {
	if c == nil {
		return nil
	}
	v := float64(*c) / 100
	return &v
}

// signals computes the five signals of the subject and one candidate, or false when a hard filter
// refuses the pair. Skills weigh by their rarity among the region's available freelancers.
func (s *Service) signals(sub subject, f *facts, cosine float32, snap *snapshot) (score.Signals, bool) {
	var (
		dir score.Direction
		job score.JobFacts
		fr  score.FreelancerFacts
	)
	if sub.Direction == dirFreelancers {
		dir = score.FreelancersForJob
		r := s.ratingOf(f.ID)
		job = score.JobFacts{Skills: sub.Skills, BudgetMin: units(sub.BudgetMin), BudgetMax: units(sub.BudgetMax),
			Currency: sub.Currency, Remote: sub.Remote, Country: sub.Country, Open: true}
		fr = score.FreelancerFacts{Skills: f.Skills, HourlyRate: units(f.Rate), Country: f.Country, Available: f.Eligible,
			Reviews: r.n, Rating: r.avg}
	} else {
		dir = score.JobsForFreelancer
		r := s.ratingOf(f.Owner)
		job = score.JobFacts{Skills: f.Skills, BudgetMin: units(f.BudgetMin), BudgetMax: units(f.BudgetMax),
			Currency: f.Currency, Remote: f.Remote, Country: f.Country, Open: f.Eligible, OwnerReviews: r.n, OwnerRating: r.avg}
		fr = score.FreelancerFacts{Skills: sub.Skills, HourlyRate: units(sub.Rate), Country: sub.Country, Available: true}
	}
	if ok, _ := score.Eligible(job, fr); !ok {
		return score.Signals{}, false
	}
	return score.Compute(dir, job, fr, float64(cosine), s.profiles.load().idf), true
}
