package synth

import (
	"cmp"
	"fmt"
	"math"
	"time"

	"github.com/8thdegree/meridian/api/internal/matching/learn"
)

// SimOptions shape a simulation. Zero fields take the DefaultSimOptions value, except Eta and
// Explore, whose zero is meaningful (no position bias, no exploration): start from DefaultSimOptions.
type SimOptions struct {
	ListSize int           // items shown per list
	Views    int           // lists shown per job
	Gap      time.Duration // between a job's views; the first is shown when the job is posted
	// Eta is the position bias: position p is examined with probability 1/p^Eta.
	Eta float64
	// Explore is the probability that a shown slot below the third is given to a random candidate not
	// otherwise shown, as engines do to learn about what they would not show.
	Explore float64
	Seed    int64
}

// DefaultSimOptions shows 20 items, three times per job a day apart, with position bias η = 1 and
// no exploration.
func DefaultSimOptions() SimOptions {
	return SimOptions{ListSize: 20, Views: 3, Gap: 24 * time.Hour, Eta: 1}
}

// Validate reports the first option out of range, by name.
func (o SimOptions) Validate() error {
	switch {
	case o.ListSize < 0:
		return fmt.Errorf("synth: ListSize must be ≥ 0, got %d", o.ListSize)
	case o.Views < 0:
		return fmt.Errorf("synth: Views must be ≥ 0, got %d", o.Views)
	case o.Gap < 0:
		return fmt.Errorf("synth: Gap must be ≥ 0, got %v", o.Gap)
	case !(o.Eta >= 0) || math.IsInf(o.Eta, 0):
		return fmt.Errorf("synth: Eta must be a number ≥ 0, got %v", o.Eta)
	case !(o.Explore >= 0 && o.Explore <= 1):
		return fmt.Errorf("synth: Explore must be in [0, 1], got %v", o.Explore)
	}
	return nil
}

// Impression is one list shown for a job and what happened to each of its items.
type Impression struct {
	ListID string
	Job    int
	At     time.Time
	Items  []Shown
}

// Shown is one item of an Impression. Each stage implies the ones before it.
type Shown struct {
	Freelancer int
	Position   int     // 1-based
	Propensity float64 // P(examine | Position) = 1/Position^Eta, known to the simulator
	Examined   bool    // the client looked at it (never observed by the engine)
	Opened     bool
	Applied    bool
	Hired      bool
	Completed  bool
	Rating     int // 1–5 once Completed, else 0
}

// Label is how far the item got, on learn's scale.
func (s Shown) Label() int {
	switch {
	case s.Completed && s.Rating >= learn.GoodRating:
		return learn.LabelCompleted
	case s.Hired:
		return learn.LabelHired
	case s.Applied:
		return learn.LabelApplied
	case s.Opened:
		return learn.LabelOpened
	}
	return learn.LabelShown
}

// Stage probabilities by utility 0–4, given the stage before.
var (
	pOpen     = [5]float64{0.04, 0.15, 0.35, 0.60, 0.85} // examined → opened
	pApply    = [5]float64{0.05, 0.20, 0.40, 0.60, 0.80} // opened → applied (the freelancer's choice)
	pHire     = [5]float64{0.02, 0.10, 0.25, 0.45, 0.70} // applied → hired
	pComplete = [5]float64{0.30, 0.50, 0.70, 0.85, 0.95} // hired → completed
)

// Simulate shows, for every job in posting order, opts.Views lists of the first opts.ListSize
// freelancers of rank(job), and draws what the client and freelancers do: a position is examined
// with probability 1/position^Eta; an examined item is opened, applied to, hired and completed with
// probabilities that grow with the hidden utility; a completed contract is rated from the utility and
// the freelancer's quality. The market's bias withholds a share Strength of its group's opens and
// hires, and marks its ratings down. Each list draws from its own stream of opts.Seed.
func Simulate(m *Market, rank func(job int) []int, opts SimOptions) []Impression {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	d := DefaultSimOptions()
	opts.ListSize = cmp.Or(opts.ListSize, d.ListSize)
	opts.Views = cmp.Or(opts.Views, d.Views)
	opts.Gap = cmp.Or(opts.Gap, d.Gap)
	var out []Impression
	for j := range m.Jobs {
		for v := range opts.Views {
			rng := stream(opts.Seed, streamList, uint64(j)<<16|uint64(v))
			ranked := rank(j)
			shown := append([]int(nil), ranked[:min(opts.ListSize, len(ranked))]...)
			if opts.Explore > 0 && len(ranked) > len(shown) {
				rest := append([]int(nil), ranked[len(shown):]...)
				for p := 3; p < len(shown) && len(rest) > 0; p++ {
					if rng.Float64() < opts.Explore {
						k := rng.IntN(len(rest))
						shown[p] = rest[k]
						rest[k] = rest[len(rest)-1]
						rest = rest[:len(rest)-1]
					}
				}
			}
			imp := Impression{
				ListID: fmt.Sprintf("%s/%d", m.Jobs[j].ID, v+1),
				Job:    j,
				At:     m.Jobs[j].PostedAt.Add(time.Duration(v) * opts.Gap),
			}
			for p, f := range shown {
				s := Shown{Freelancer: f, Position: p + 1, Propensity: learn.ExaminationPropensity(p+1, opts.Eta)}
				u := m.Utility(j, f)
				fl := &m.Freelancers[f]
				keep := 1.0
				if m.biased(*fl) {
					keep = 1 - m.bias.Strength
				}
				// Every draw is made whatever the earlier outcome, so the stream stays aligned and a
				// bias changes only the outcomes it touches.
				e, o, a, h, c, r := rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64(), rng.NormFloat64()
				s.Examined = e < s.Propensity
				s.Opened = s.Examined && o < pOpen[u]*keep
				s.Applied = s.Opened && a < pApply[u]
				s.Hired = s.Applied && h < pHire[u]*keep
				s.Completed = s.Hired && c < pComplete[u]
				if s.Completed {
					shift := 0.0
					if keep < 1 {
						shift = 1.5 * m.bias.Strength
					}
					s.Rating = int(math.Max(1, math.Min(5, math.Round(1.5+0.6*float64(u)+1.2*fl.Quality+0.7*r-shift))))
				}
				imp.Items = append(imp.Items, s)
			}
			out = append(out, imp)
		}
	}
	return out
}

// Examples turns impressions into learn's examples: the Features of each shown pair, its Label and
// its propensity, as the service would build them from recorded outcomes.
func (m *Market) Examples(imps []Impression) []learn.Example {
	var out []learn.Example
	for _, imp := range imps {
		for _, s := range imp.Items {
			out = append(out, learn.Example{
				ListID:     imp.ListID,
				ItemID:     m.Freelancers[s.Freelancer].ID,
				At:         imp.At,
				Position:   s.Position,
				Features:   m.Features(imp.Job, s.Freelancer),
				Label:      s.Label(),
				Propensity: s.Propensity,
			})
		}
	}
	return out
}

// UtilityLists are evaluation lists graded by the truth: for each job, every candidate with the
// hidden utility as its Label (Position in candidate order, Propensity 1), so learn.NDCG measures how
// well a weight vector ranks the whole candidate set. ListIDs are "<job id>/utility"; At is when the
// job was posted.
func (m *Market) UtilityLists(jobs []int) []learn.Example {
	var out []learn.Example
	for _, j := range jobs {
		for p, f := range m.Candidates(j) {
			out = append(out, learn.Example{
				ListID:     m.Jobs[j].ID + "/utility",
				ItemID:     m.Freelancers[f].ID,
				At:         m.Jobs[j].PostedAt,
				Position:   p + 1,
				Features:   m.Features(j, f),
				Label:      m.Utility(j, f),
				Propensity: 1,
			})
		}
	}
	return out
}

// JobsPostedFrom are the jobs posted at or after t, in posting order.
func (m *Market) JobsPostedFrom(t time.Time) []int {
	var out []int
	for j := range m.Jobs {
		if !m.Jobs[j].PostedAt.Before(t) {
			out = append(out, j)
		}
	}
	return out
}
