package score

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/8thdegree/meridian/api/internal/skills"
)

// The signals' names, as reasons carry them in the API (`reasons[].signal`).
const (
	SignalSimilarity    = "similarity"
	SignalSkillCoverage = "skill_coverage"
	SignalRating        = "rating"
	SignalPriceFit      = "price_fit"
	SignalAvailability  = "availability"
)

// Names lists the signals in the one order that Weights.Vector, Signals.Vector, FromVector and the
// reasons of Score all use.
func Names() []string {
	return []string{SignalSimilarity, SignalSkillCoverage, SignalRating, SignalPriceFit, SignalAvailability}
}

// The Bayesian rating's prior: a mean of PriorMean stars, worth PriorWeight reviews.
const (
	PriorMean   = 3.5
	PriorWeight = 5.0
)

// Weights are the coefficients of the signals in the score.
type Weights struct {
	Similarity    float64 `json:"similarity"`
	SkillCoverage float64 `json:"skill_coverage"`
	Rating        float64 `json:"rating"`
	PriceFit      float64 `json:"price_fit"`
	Availability  float64 `json:"availability"`
}

// Default returns the hand-set weights that serve until a trained model is promoted: what the text
// says and which skills are covered decide most of the order, reviews and price break ties.
func Default() Weights {
	return Weights{Similarity: 0.45, SkillCoverage: 0.30, Rating: 0.10, PriceFit: 0.10, Availability: 0.05}
}

// Vector returns the weights in the order of Names.
func (w Weights) Vector() []float64 {
	return []float64{w.Similarity, w.SkillCoverage, w.Rating, w.PriceFit, w.Availability}
}

// ErrWeights is returned for a weight vector that cannot be used.
var ErrWeights = errors.New("score: bad weights")

// FromVector is the inverse of Vector. It refuses a vector of the wrong length or with a weight
// that is not a finite number.
func FromVector(v []float64) (Weights, error) {
	if len(v) != len(Names()) {
		return Weights{}, fmt.Errorf("%w: %d values, want %d (%s)", ErrWeights, len(v), len(Names()), strings.Join(Names(), ", "))
	}
	w := Weights{Similarity: v[0], SkillCoverage: v[1], Rating: v[2], PriceFit: v[3], Availability: v[4]}
	return w, w.Validate()
}

// Validate refuses weights that are not finite numbers (a NaN weight would make every score NaN).
func (w Weights) Validate() error {
	for i, x := range w.Vector() {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: %s is %v", ErrWeights, Names()[i], x)
		}
	}
	return nil
}

// Direction says who the list is for, which decides whose rating counts and how reasons read.
type Direction int

const (
	// FreelancersForJob is a list of freelancers shown to a job's owner.
	FreelancersForJob Direction = iota
	// JobsForFreelancer is a list of open jobs shown to a freelancer.
	JobsForFreelancer
)

// JobFacts is what scoring needs to know about a job.
type JobFacts struct {
	Skills []string
	// BudgetMin and BudgetMax, in Currency, are nil when that side of the budget is open.
	BudgetMin, BudgetMax *float64
	Currency             string
	Remote               bool
	// Country is where an on-site job is done (ISO 3166-1 alpha-2), "" when unknown.
	Country string
	Open    bool
	// OwnerReviews and OwnerRating are the count and the average (1–5) of the verified reviews the
	// job's client has received.
	OwnerReviews int
	OwnerRating  float64
}

// FreelancerFacts is what scoring needs to know about a freelancer.
type FreelancerFacts struct {
	Skills     []string
	HourlyRate *float64
	// Currency of HourlyRate; "" means the job's currency (profiles state none).
	Currency  string
	Country   string
	Available bool
	// Reviews and Rating are the count and the average (1–5) of the verified reviews the
	// freelancer has received.
	Reviews int
	Rating  float64
}

// The reasons Eligible gives for refusing a pair; stable, so they can label a metric.
const (
	ReasonJobNotOpen            = "job_not_open"
	ReasonFreelancerUnavailable = "freelancer_unavailable"
	ReasonOnsiteElsewhere       = "onsite_elsewhere"
	ReasonOverBudget            = "over_budget"
)

// Eligible applies the hard filters (see the package doc). It returns true and "" for a pair that
// may be scored, or false and one of the Reason constants, the first filter that refused it.
func Eligible(job JobFacts, f FreelancerFacts) (bool, string) {
	switch {
	case !job.Open:
		return false, ReasonJobNotOpen
	case !f.Available:
		return false, ReasonFreelancerUnavailable
	case !job.Remote && job.Country != "" && f.Country != "" && !strings.EqualFold(job.Country, f.Country):
		return false, ReasonOnsiteElsewhere
	case f.HourlyRate != nil && job.BudgetMax != nil && sameCurrency(job, f) && *f.HourlyRate > 2**job.BudgetMax:
		return false, ReasonOverBudget
	}
	return true, ""
}

func sameCurrency(job JobFacts, f FreelancerFacts) bool {
	return f.Currency == "" || job.Currency == "" || strings.EqualFold(f.Currency, job.Currency)
}

// Similarity maps a cosine to the similarity signal: max(0, c), at most 1.
func Similarity(cosine float64) float64 {
	if math.IsNaN(cosine) {
		return 0
	}
	return clamp01(cosine)
}

// SkillCoverage is the weighted share of the wanted skills that have covers (see the package doc),
// with the wanted skills that are covered and those that are not, folded, in the order of wanted.
func SkillCoverage(wanted, have []string, weights map[string]float64) (value float64, matched, missing []string) {
	has := make(map[string]bool, len(have))
	for _, s := range have {
		has[skills.Fold(s)] = true
	}
	folded := make(map[string]float64, len(weights))
	for s, w := range weights {
		folded[skills.Fold(s)] = w
	}
	seen := make(map[string]bool, len(wanted))
	var total, got float64
	for _, s := range wanted {
		s = skills.Fold(s)
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		w, ok := folded[s]
		if !ok || !(w > 0) || math.IsInf(w, 0) {
			w = 1
		}
		total += w
		if has[s] {
			got += w
			matched = append(matched, s)
		} else {
			missing = append(missing, s)
		}
	}
	if total == 0 {
		return 0.5, nil, nil
	}
	return got / total, matched, missing
}

// BayesianRating is (C·m + n·avg)/(C + n) on the 1–5 scale, with the prior PriorMean worth
// PriorWeight reviews. A negative count counts as none; the average is clamped to 1–5.
func BayesianRating(n int, avg float64) float64 {
	if n <= 0 || math.IsNaN(avg) {
		return PriorMean
	}
	avg = math.Min(5, math.Max(1, avg))
	return (PriorWeight*PriorMean + float64(n)*avg) / (PriorWeight + float64(n))
}

// Rating is the rating signal: BayesianRating mapped from 1–5 to (r−1)/4.
func Rating(n int, avg float64) float64 {
	return clamp01((BayesianRating(n, avg) - 1) / 4)
}

// PriceFit is the price-fit signal for an hourly rate against a budget's upper bound, both in the
// same currency: 0.5 when the rate is unknown, 1 when there is no upper bound or the rate is within
// it, then 2 − rate/budgetMax down to 0 at twice the bound.
func PriceFit(rate, budgetMax *float64) float64 {
	switch {
	case rate == nil || math.IsNaN(*rate):
		return 0.5
	case budgetMax == nil || math.IsNaN(*budgetMax) || *rate <= *budgetMax:
		return 1
	case *budgetMax <= 0:
		return 0
	}
	return clamp01(2 - *rate / *budgetMax)
}

// Signals are the five signals of one pair, each in [0,1], and (when made by Compute) the facts
// behind them that the reasons' sentences quote.
type Signals struct {
	Similarity    float64 `json:"similarity"`
	SkillCoverage float64 `json:"skill_coverage"`
	Rating        float64 `json:"rating"`
	PriceFit      float64 `json:"price_fit"`
	Availability  float64 `json:"availability"`

	facts *facts
}

type facts struct {
	dir              Direction
	cosine           float64
	wanted           int
	matched, missing []string
	reviews          int
	average          float64
	rate, min, max   *float64
	currency         string
	otherCurrency    bool
	available, open  bool
}

// Vector returns the signals in the order of Names: the features a ranking model is trained on.
func (s Signals) Vector() []float64 {
	return []float64{s.Similarity, s.SkillCoverage, s.Rating, s.PriceFit, s.Availability}
}

// Compute derives the signals of a pair from its facts, the cosine of their embeddings and the
// skills' weights (nil: every skill weighs 1). It does not apply the hard filters; Eligible does.
func Compute(dir Direction, job JobFacts, f FreelancerFacts, cosine float64, skillWeights map[string]float64) Signals {
	fc := &facts{dir: dir, cosine: cosine, rate: f.HourlyRate, min: job.BudgetMin, max: job.BudgetMax,
		currency: job.Currency, available: f.Available, open: job.Open}
	var s Signals
	s.Similarity = Similarity(cosine)
	s.SkillCoverage, fc.matched, fc.missing = SkillCoverage(job.Skills, f.Skills, skillWeights)
	fc.wanted = len(fc.matched) + len(fc.missing)
	fc.reviews, fc.average = f.Reviews, f.Rating
	if dir == JobsForFreelancer {
		fc.reviews, fc.average = job.OwnerReviews, job.OwnerRating
	}
	s.Rating = Rating(fc.reviews, fc.average)
	if sameCurrency(job, f) {
		s.PriceFit = PriceFit(f.HourlyRate, job.BudgetMax)
	} else {
		fc.otherCurrency = true
		s.PriceFit = 0.5
	}
	if f.Available && job.Open {
		s.Availability = 1
	}
	s.facts = fc
	return s
}

// Reason is one signal's share of a score, as the API shows it.
type Reason struct {
	Signal       string  `json:"signal"`
	Contribution float64 `json:"contribution"`
	Text         string  `json:"text"`
}

// Score returns Σ wᵢ·sᵢ and one reason per signal, in the order of Names. The score is the sum of
// the reasons' contributions taken in that order, so they add up to it exactly.
func Score(s Signals, w Weights) (float64, []Reason) {
	values := s.Vector()
	weights := w.Vector()
	reasons := make([]Reason, len(values))
	var total float64
	for i, name := range Names() {
		c := weights[i] * values[i]
		total += c
		reasons[i] = Reason{Signal: name, Contribution: c, Text: s.text(name, values[i])}
	}
	return total, reasons
}

func (s Signals) text(signal string, value float64) string {
	f := s.facts
	if f == nil {
		return fmt.Sprintf("%s %.2f", strings.ReplaceAll(signal, "_", " "), value)
	}
	switch signal {
	case SignalSimilarity:
		return fmt.Sprintf("similar text (cosine %.2f)", f.cosine)
	case SignalSkillCoverage:
		return f.skillText()
	case SignalRating:
		return f.ratingText()
	case SignalPriceFit:
		return f.priceText()
	default:
		return f.availabilityText()
	}
}

func (f *facts) skillText() string {
	if f.wanted == 0 {
		return "the job lists no skills"
	}
	var b strings.Builder
	if f.dir == JobsForFreelancer {
		fmt.Fprintf(&b, "you have %d of its %d skills", len(f.matched), f.wanted)
	} else {
		fmt.Fprintf(&b, "covers %d of %d skills", len(f.matched), f.wanted)
	}
	if len(f.matched) > 0 {
		b.WriteString(": " + listed(f.matched))
	}
	if len(f.missing) > 0 && len(f.matched) > 0 {
		b.WriteString(" (missing " + listed(f.missing) + ")")
	} else if len(f.missing) > 0 {
		b.WriteString(": missing " + listed(f.missing))
	}
	return b.String()
}

// listed names at most five skills, then how many more there are.
func listed(s []string) string {
	const most = 5
	if len(s) <= most {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:most], ", ") + fmt.Sprintf(" and %d more", len(s)-most)
}

func (f *facts) ratingText() string {
	whose := ""
	if f.dir == JobsForFreelancer {
		whose = "client "
	}
	if f.reviews <= 0 {
		if whose != "" {
			return fmt.Sprintf("client has no verified reviews yet (counted as %.1f)", PriorMean)
		}
		return fmt.Sprintf("no verified reviews yet (counted as %.1f)", PriorMean)
	}
	noun := "reviews"
	if f.reviews == 1 {
		noun = "review"
	}
	return fmt.Sprintf("%srated %.1f from %d verified %s (counted as %.2f)", whose, f.average, f.reviews, noun, BayesianRating(f.reviews, f.average))
}

func (f *facts) priceText() string {
	cur := ""
	if f.currency != "" {
		cur = " " + f.currency
	}
	switch {
	case f.otherCurrency:
		return "rate in another currency than the budget"
	case f.rate == nil:
		return "no hourly rate stated"
	case f.max == nil:
		return fmt.Sprintf("rate %s%s, the budget has no upper limit", money(*f.rate), cur)
	case *f.rate <= *f.max:
		return fmt.Sprintf("rate %s%s within the budget of %s%s", money(*f.rate), cur, budget(f.min, *f.max), cur)
	case *f.max <= 0:
		return fmt.Sprintf("rate %s%s over a budget of 0", money(*f.rate), cur)
	}
	over := (*f.rate / *f.max - 1) * 100
	return fmt.Sprintf("rate %s%s is %.0f%% over the budget of %s%s", money(*f.rate), cur, over, budget(f.min, *f.max), cur)
}

func (f *facts) availabilityText() string {
	switch {
	case f.dir == JobsForFreelancer && f.open:
		return "open for proposals"
	case f.dir == JobsForFreelancer:
		return "not open for proposals"
	case f.available:
		return "available now"
	}
	return "not available"
}

func budget(lo *float64, hi float64) string {
	if lo == nil || *lo == hi {
		return "up to " + money(hi)
	}
	return money(*lo) + "–" + money(hi)
}

func money(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

func clamp01(x float64) float64 {
	return math.Min(1, math.Max(0, x))
}
