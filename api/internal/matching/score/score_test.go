package score

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func ptr(v float64) *float64 { return &v }

func TestWeights(t *testing.T) {
	d := Default()
	var sum float64
	for _, x := range d.Vector() {
		sum += x
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Errorf("Default() sums to %v, want 1", sum)
	}
	if got, want := d.Vector(), []float64{0.45, 0.30, 0.10, 0.10, 0.05}; !slices.Equal(got, want) {
		t.Errorf("Default().Vector() = %v, want %v", got, want)
	}
	if len(Names()) != len(d.Vector()) {
		t.Fatalf("Names() has %d names for %d weights", len(Names()), len(d.Vector()))
	}
	// Vector's order is Names' order: each field lands where its name is.
	one := map[string]Weights{
		SignalSimilarity: {Similarity: 1}, SignalSkillCoverage: {SkillCoverage: 1}, SignalRating: {Rating: 1},
		SignalPriceFit: {PriceFit: 1}, SignalAvailability: {Availability: 1},
	}
	for i, name := range Names() {
		v := one[name].Vector()
		if v[i] != 1 {
			t.Errorf("weight %s is at %v, want index %d", name, v, i)
		}
	}

	for _, c := range []struct {
		name string
		in   []float64
		ok   bool
	}{
		{"default", d.Vector(), true},
		{"negative and large are fine", []float64{-1, 2, 0, 1e6, -0.5}, true},
		{"too short", []float64{1, 2, 3, 4}, false},
		{"too long", []float64{1, 2, 3, 4, 5, 6}, false},
		{"nil", nil, false},
		{"NaN", []float64{1, math.NaN(), 0, 0, 0}, false},
		{"Inf", []float64{1, 0, 0, math.Inf(-1), 0}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := FromVector(c.in)
			if c.ok != (err == nil) {
				t.Fatalf("FromVector(%v) error = %v, want ok=%v", c.in, err, c.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrWeights) {
					t.Errorf("error %v is not ErrWeights", err)
				}
				return
			}
			if !slices.Equal(w.Vector(), c.in) {
				t.Errorf("FromVector(%v).Vector() = %v", c.in, w.Vector())
			}
		})
	}
}

func TestSimilarity(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{1, 1}, {0.62, 0.62}, {0, 0}, {-0.3, 0}, {-1, 0}, {1.0000001, 1}, {math.NaN(), 0},
	} {
		if got := Similarity(c.in); got != c.want {
			t.Errorf("Similarity(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestSkillCoverage(t *testing.T) {
	for _, c := range []struct {
		name             string
		wanted, have     []string
		weights          map[string]float64
		want             float64
		matched, missing []string
	}{
		{"all", []string{"go", "sql"}, []string{"sql", "go", "k8s"}, nil, 1, []string{"go", "sql"}, nil},
		{"none", []string{"go", "sql"}, []string{"rust"}, nil, 0, nil, []string{"go", "sql"}},
		{"half unweighted", []string{"go", "sql"}, []string{"go"}, nil, 0.5, []string{"go"}, []string{"sql"}},
		{"3 of 4", []string{"go", "sql", "k8s", "rust"}, []string{"go", "sql", "k8s"}, nil, 0.75,
			[]string{"go", "sql", "k8s"}, []string{"rust"}},
		{"folded on both sides", []string{" Go ", "Machine  Learning"}, []string{"GO", "machine learning"}, nil, 1,
			[]string{"go", "machine learning"}, nil},
		{"repeats in the job count once", []string{"go", "Go", "sql"}, []string{"go"}, nil, 0.5, []string{"go"}, []string{"sql"}},
		{"rare skill weighs more", []string{"go", "cobol"}, []string{"cobol"}, map[string]float64{"go": 1, "cobol": 3}, 0.75,
			[]string{"cobol"}, []string{"go"}},
		{"common skill weighs less", []string{"go", "cobol"}, []string{"go"}, map[string]float64{"go": 1, "cobol": 3}, 0.25,
			[]string{"go"}, []string{"cobol"}},
		{"weights' keys are folded", []string{"go", "cobol"}, []string{"cobol"}, map[string]float64{"Go": 1, " COBOL": 3}, 0.75,
			[]string{"cobol"}, []string{"go"}},
		{"skill without a weight weighs 1", []string{"go", "cobol"}, []string{"cobol"}, map[string]float64{"cobol": 3}, 0.75,
			[]string{"cobol"}, []string{"go"}},
		{"zero, negative, NaN and Inf weights weigh 1", []string{"a", "b", "c", "d"}, []string{"a"},
			map[string]float64{"a": 0, "b": -2, "c": math.NaN(), "d": math.Inf(1)}, 0.25, []string{"a"}, []string{"b", "c", "d"}},
		{"job lists no skills", nil, []string{"go"}, nil, 0.5, nil, nil},
		{"job lists only blanks", []string{" ", ""}, []string{"go"}, nil, 0.5, nil, nil},
		{"freelancer has none", []string{"go"}, nil, nil, 0, nil, []string{"go"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, matched, missing := SkillCoverage(c.wanted, c.have, c.weights)
			if math.Abs(got-c.want) > 1e-12 || !slices.Equal(matched, c.matched) || !slices.Equal(missing, c.missing) {
				t.Errorf("SkillCoverage(%q, %q, %v) = %v %q %q, want %v %q %q",
					c.wanted, c.have, c.weights, got, matched, missing, c.want, c.matched, c.missing)
			}
		})
	}
}

func TestRating(t *testing.T) {
	for _, c := range []struct {
		name  string
		n     int
		avg   float64
		bayes float64
	}{
		{"no reviews is the prior", 0, 0, 3.5},
		{"negative count is none", -3, 5, 3.5},
		{"NaN average is the prior", 4, math.NaN(), 3.5},
		{"one five-star review", 1, 5, (5*3.5 + 5) / 6},
		{"five five-star reviews", 5, 5, 4.25},
		{"many one-star reviews", 95, 1, (5*3.5 + 95) / 100},
		{"average above 5 is clamped", 5, 9, 4.25},
		{"average below 1 is clamped", 5, 0, 2.25},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := BayesianRating(c.n, c.avg); math.Abs(got-c.bayes) > 1e-12 {
				t.Errorf("BayesianRating(%d, %v) = %v, want %v", c.n, c.avg, got, c.bayes)
			}
			if got, want := Rating(c.n, c.avg), (c.bayes-1)/4; math.Abs(got-want) > 1e-12 {
				t.Errorf("Rating(%d, %v) = %v, want %v", c.n, c.avg, got, want)
			}
		})
	}
	if Rating(0, 0) != 0.625 {
		t.Errorf("Rating with no reviews = %v, want 0.625", Rating(0, 0))
	}
	// Monotone: a better average never lowers the signal; more reviews move it further from the prior.
	for n := 1; n <= 50; n++ {
		for a := 1.0; a < 5; a += 0.25 {
			if Rating(n, a+0.25) <= Rating(n, a) {
				t.Fatalf("Rating(%d, %v) >= Rating(%d, %v)", n, a, n, a+0.25)
			}
		}
		if Rating(n+1, 5) <= Rating(n, 5) || Rating(n+1, 1) >= Rating(n, 1) {
			t.Fatalf("one more review did not move the rating further from the prior at n=%d", n)
		}
		if r := Rating(n, 5); r > 1 || r < 0 {
			t.Fatalf("Rating(%d, 5) = %v out of [0,1]", n, r)
		}
	}
}

func TestPriceFit(t *testing.T) {
	for _, c := range []struct {
		name      string
		rate, max *float64
		want      float64
	}{
		{"no rate", nil, ptr(50), 0.5},
		{"no rate, no budget", nil, nil, 0.5},
		{"no upper bound", ptr(500), nil, 1},
		{"under budget", ptr(20), ptr(50), 1},
		{"at budget", ptr(50), ptr(50), 1},
		{"25% over", ptr(62.5), ptr(50), 0.75},
		{"50% over", ptr(75), ptr(50), 0.5},
		{"at twice", ptr(100), ptr(50), 0},
		{"beyond twice", ptr(180), ptr(50), 0},
		{"zero budget, free", ptr(0), ptr(0), 1},
		{"zero budget, paid", ptr(10), ptr(0), 0},
		{"NaN rate", ptr(math.NaN()), ptr(50), 0.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := PriceFit(c.rate, c.max); math.Abs(got-c.want) > 1e-12 {
				t.Errorf("PriceFit = %v, want %v", got, c.want)
			}
		})
	}
	// Monotone: a higher rate never fits better.
	prev := 2.0
	for r := 0.0; r <= 250; r += 2.5 {
		got := PriceFit(ptr(r), ptr(100))
		if got > prev {
			t.Fatalf("PriceFit(%v) = %v > PriceFit of a lower rate %v", r, got, prev)
		}
		prev = got
	}
}

func TestEligible(t *testing.T) {
	open := JobFacts{Open: true, Remote: true, BudgetMax: ptr(50), Currency: "USD"}
	free := FreelancerFacts{Available: true, HourlyRate: ptr(60), Country: "DE"}
	onsite := func(country string) JobFacts { j := open; j.Remote = false; j.Country = country; return j }
	rate := func(f FreelancerFacts, r *float64, cur string) FreelancerFacts {
		f.HourlyRate = r
		f.Currency = cur
		return f
	}
	for _, c := range []struct {
		name   string
		job    JobFacts
		f      FreelancerFacts
		ok     bool
		reason string
	}{
		{"remote job, available freelancer", open, free, true, ""},
		{"job not open", JobFacts{Remote: true}, free, false, ReasonJobNotOpen},
		{"job not open is said first", JobFacts{}, FreelancerFacts{}, false, ReasonJobNotOpen},
		{"freelancer not available", open, FreelancerFacts{Country: "DE"}, false, ReasonFreelancerUnavailable},
		{"on site, same country", onsite("DE"), free, true, ""},
		{"on site, same country any case", onsite("de"), free, true, ""},
		{"on site elsewhere", onsite("FR"), free, false, ReasonOnsiteElsewhere},
		{"on site, job country unknown", onsite(""), free, true, ""},
		{"on site, freelancer country unknown", onsite("FR"), FreelancerFacts{Available: true}, true, ""},
		{"remote ignores countries", open, FreelancerFacts{Available: true, Country: "JP"}, true, ""},
		{"rate at twice the budget", open, rate(free, ptr(100), ""), true, ""},
		{"rate over twice the budget", open, rate(free, ptr(100.01), ""), false, ReasonOverBudget},
		{"rate over twice, same currency named", open, rate(free, ptr(101), "usd"), false, ReasonOverBudget},
		{"rate over twice, another currency", open, rate(free, ptr(101), "EUR"), true, ""},
		{"no rate", open, rate(free, nil, ""), true, ""},
		{"no budget max", JobFacts{Open: true, Remote: true, BudgetMin: ptr(10)}, rate(free, ptr(1000), ""), true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, reason := Eligible(c.job, c.f)
			if ok != c.ok || reason != c.reason {
				t.Errorf("Eligible = %v %q, want %v %q", ok, reason, c.ok, c.reason)
			}
		})
	}
}

func randomSignals(r *rand.Rand) Signals {
	return Signals{Similarity: r.Float64(), SkillCoverage: r.Float64(), Rating: r.Float64(), PriceFit: r.Float64(), Availability: float64(r.IntN(2))}
}

func TestScoreContributionsSumExactly(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		s := randomSignals(r)
		w := Default()
		if i%2 == 1 { // trained weights: any sign, any scale
			w = Weights{r.NormFloat64(), r.NormFloat64() * 10, r.NormFloat64() / 3, r.NormFloat64(), r.NormFloat64() * 1e3}
		}
		got, reasons := Score(s, w)
		if len(reasons) != len(Names()) {
			t.Fatalf("%d reasons, want %d", len(reasons), len(Names()))
		}
		var sum float64
		for j, rs := range reasons {
			if rs.Signal != Names()[j] {
				t.Fatalf("reason %d is %q, want %q", j, rs.Signal, Names()[j])
			}
			if want := w.Vector()[j] * s.Vector()[j]; rs.Contribution != want {
				t.Fatalf("%s contributes %v, want weight×signal %v", rs.Signal, rs.Contribution, want)
			}
			if rs.Text == "" {
				t.Fatalf("%s has no text", rs.Signal)
			}
			sum += rs.Contribution
		}
		if sum != got {
			t.Fatalf("contributions sum to %v, score is %v (%+v, %+v)", sum, got, s, w)
		}
		if i%2 == 0 && (got < 0 || got > 1) {
			t.Fatalf("default score %v out of [0,1] for %+v", got, s)
		}
	}
}

func TestScoreMonotone(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	set := []func(*Signals, float64){
		func(s *Signals, v float64) { s.Similarity = v },
		func(s *Signals, v float64) { s.SkillCoverage = v },
		func(s *Signals, v float64) { s.Rating = v },
		func(s *Signals, v float64) { s.PriceFit = v },
		func(s *Signals, v float64) { s.Availability = v },
	}
	for i := 0; i < 2000; i++ {
		base := randomSignals(r)
		for j, f := range set {
			lo, hi := base, base
			a, b := r.Float64(), r.Float64()
			if a > b {
				a, b = b, a
			}
			if a == b {
				continue
			}
			f(&lo, a)
			f(&hi, b)
			sl, _ := Score(lo, Default())
			sh, _ := Score(hi, Default())
			if sh <= sl {
				t.Fatalf("raising %s from %v to %v did not raise the score (%v -> %v)", Names()[j], a, b, sl, sh)
			}
			// A negative weight turns it around.
			w := Default()
			v := w.Vector()
			v[j] = -v[j]
			w, _ = FromVector(v)
			sl, _ = Score(lo, w)
			sh, _ = Score(hi, w)
			if sh >= sl {
				t.Fatalf("with a negative weight, raising %s raised the score", Names()[j])
			}
		}
	}
}

func TestScoreEdges(t *testing.T) {
	if got, _ := Score(Signals{}, Default()); got != 0 {
		t.Errorf("all-zero signals score %v", got)
	}
	if got, _ := Score(Signals{1, 1, 1, 1, 1, nil}, Default()); math.Abs(got-1) > 1e-12 {
		t.Errorf("all-one signals score %v, want 1", got)
	}
	if got, reasons := Score(Signals{1, 1, 1, 1, 1, nil}, Weights{}); got != 0 || reasons[0].Contribution != 0 {
		t.Errorf("zero weights score %v", got)
	}
	// Signals made by hand (not by Compute) still read.
	_, reasons := Score(Signals{Similarity: 0.625}, Default())
	if reasons[0].Text != "similarity 0.62" && reasons[0].Text != "similarity 0.63" {
		t.Errorf("plain text = %q", reasons[0].Text)
	}
	if reasons[1].Text != "skill coverage 0.00" {
		t.Errorf("plain text = %q", reasons[1].Text)
	}
}

func TestComputeAndTexts(t *testing.T) {
	job := JobFacts{Skills: []string{"Go", "SQL", "k8s", "Rust"}, BudgetMin: ptr(30), BudgetMax: ptr(60), Currency: "USD",
		Remote: true, Open: true, OwnerReviews: 3, OwnerRating: 4}
	f := FreelancerFacts{Skills: []string{"go", "sql", "K8S", "python"}, HourlyRate: ptr(45), Country: "DE", Available: true,
		Reviews: 12, Rating: 4.8}
	with := func(mod func(*JobFacts, *FreelancerFacts)) (JobFacts, FreelancerFacts) {
		j, fr := job, f
		mod(&j, &fr)
		return j, fr
	}
	type texts map[string]string
	for _, c := range []struct {
		name   string
		dir    Direction
		mod    func(*JobFacts, *FreelancerFacts)
		cosine float64
		want   Signals
		texts  texts
	}{
		{"freelancers for a job", FreelancersForJob, func(*JobFacts, *FreelancerFacts) {}, 0.62,
			Signals{Similarity: 0.62, SkillCoverage: 0.75, Rating: ((5*3.5+12*4.8)/17 - 1) / 4, PriceFit: 1, Availability: 1},
			texts{
				SignalSimilarity:    "similar text (cosine 0.62)",
				SignalSkillCoverage: "covers 3 of 4 skills: go, sql, k8s (missing rust)",
				SignalRating:        "rated 4.8 from 12 verified reviews (counted as 4.42)",
				SignalPriceFit:      "rate 45 USD within the budget of 30–60 USD",
				SignalAvailability:  "available now",
			}},
		{"jobs for a freelancer: the client's rating", JobsForFreelancer, func(*JobFacts, *FreelancerFacts) {}, -0.1,
			Signals{Similarity: 0, SkillCoverage: 0.75, Rating: ((5*3.5+3*4)/8 - 1) / 4, PriceFit: 1, Availability: 1},
			texts{
				SignalSimilarity:    "similar text (cosine -0.10)",
				SignalSkillCoverage: "you have 3 of its 4 skills: go, sql, k8s (missing rust)",
				SignalRating:        "client rated 4.0 from 3 verified reviews (counted as 3.69)",
				SignalAvailability:  "open for proposals",
			}},
		{"over budget, no reviews, nothing covered", FreelancersForJob, func(j *JobFacts, f *FreelancerFacts) {
			f.HourlyRate = ptr(75)
			f.Reviews = 0
			f.Skills = nil
			j.BudgetMin = nil
		}, 0.3,
			Signals{Similarity: 0.3, SkillCoverage: 0, Rating: 0.625, PriceFit: 0.75, Availability: 1},
			texts{
				SignalSkillCoverage: "covers 0 of 4 skills: missing go, sql, k8s, rust",
				SignalRating:        "no verified reviews yet (counted as 3.5)",
				SignalPriceFit:      "rate 75 USD is 25% over the budget of up to 60 USD",
			}},
		{"client without reviews, one review", JobsForFreelancer, func(j *JobFacts, f *FreelancerFacts) { j.OwnerReviews = 0 }, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 0.75, Rating: 0.625, PriceFit: 1, Availability: 1},
			texts{SignalRating: "client has no verified reviews yet (counted as 3.5)"}},
		{"one review", FreelancersForJob, func(j *JobFacts, f *FreelancerFacts) { f.Reviews, f.Rating = 1, 5 }, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 0.75, Rating: ((5*3.5+5)/6 - 1) / 4, PriceFit: 1, Availability: 1},
			texts{SignalRating: "rated 5.0 from 1 verified review (counted as 3.75)"}},
		{"no rate, open budget, no skills wanted", FreelancersForJob, func(j *JobFacts, f *FreelancerFacts) {
			f.HourlyRate = nil
			j.Skills = nil
		}, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 0.5, Rating: ((5*3.5+12*4.8)/17 - 1) / 4, PriceFit: 0.5, Availability: 1},
			texts{SignalPriceFit: "no hourly rate stated", SignalSkillCoverage: "the job lists no skills"}},
		{"budget without an upper limit", FreelancersForJob, func(j *JobFacts, f *FreelancerFacts) { j.BudgetMax = nil }, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 0.75, Rating: ((5*3.5+12*4.8)/17 - 1) / 4, PriceFit: 1, Availability: 1},
			texts{SignalPriceFit: "rate 45 USD, the budget has no upper limit"}},
		{"rate in another currency", FreelancersForJob, func(j *JobFacts, f *FreelancerFacts) { f.Currency = "EUR" }, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 0.75, Rating: ((5*3.5+12*4.8)/17 - 1) / 4, PriceFit: 0.5, Availability: 1},
			texts{SignalPriceFit: "rate in another currency than the budget"}},
		{"unavailable, closed (unfiltered lists for training)", FreelancersForJob, func(j *JobFacts, f *FreelancerFacts) {
			f.Available = false
		}, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 0.75, Rating: ((5*3.5+12*4.8)/17 - 1) / 4, PriceFit: 1, Availability: 0},
			texts{SignalAvailability: "not available"}},
		{"closed job for a freelancer", JobsForFreelancer, func(j *JobFacts, f *FreelancerFacts) { j.Open = false }, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 0.75, Rating: ((5*3.5+3*4)/8 - 1) / 4, PriceFit: 1, Availability: 0},
			texts{SignalAvailability: "not open for proposals"}},
		{"many skills are cut short", FreelancersForJob, func(j *JobFacts, f *FreelancerFacts) {
			j.Skills = []string{"a", "b", "c", "d", "e", "f", "g", "h"}
			f.Skills = j.Skills
		}, 0.5,
			Signals{Similarity: 0.5, SkillCoverage: 1, Rating: ((5*3.5+12*4.8)/17 - 1) / 4, PriceFit: 1, Availability: 1},
			texts{SignalSkillCoverage: "covers 8 of 8 skills: a, b, c, d, e and 3 more"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, fr := with(c.mod)
			s := Compute(c.dir, j, fr, c.cosine, nil)
			for i, v := range s.Vector() {
				if math.Abs(v-c.want.Vector()[i]) > 1e-12 {
					t.Errorf("%s = %v, want %v", Names()[i], v, c.want.Vector()[i])
				}
			}
			_, reasons := Score(s, Default())
			for _, r := range reasons {
				if want, ok := c.texts[r.Signal]; ok && r.Text != want {
					t.Errorf("%s text = %q, want %q", r.Signal, r.Text, want)
				}
			}
		})
	}
}

func TestComputeStaysInRange(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pool := []string{"go", "sql", "k8s", "rust", "react", "figma", "seo"}
	pick := func() []string {
		var out []string
		for _, s := range pool {
			if r.IntN(2) == 0 {
				out = append(out, s)
			}
		}
		return out
	}
	opt := func(scale float64) *float64 {
		if r.IntN(4) == 0 {
			return nil
		}
		return ptr(r.Float64() * scale)
	}
	for i := 0; i < 5000; i++ {
		j := JobFacts{Skills: pick(), BudgetMax: opt(200), Open: r.IntN(2) == 0, OwnerReviews: r.IntN(20) - 2, OwnerRating: r.Float64()*6 - 0.5}
		f := FreelancerFacts{Skills: pick(), HourlyRate: opt(400), Available: r.IntN(2) == 0, Reviews: r.IntN(20), Rating: r.Float64() * 5}
		w := map[string]float64{"go": r.Float64() * 3, "seo": r.Float64()}
		s := Compute(Direction(r.IntN(2)), j, f, r.Float64()*2-1, w)
		for k, v := range s.Vector() {
			if v < 0 || v > 1 || math.IsNaN(v) {
				t.Fatalf("%s = %v out of [0,1] for %+v %+v", Names()[k], v, j, f)
			}
		}
		if ok, _ := Eligible(j, f); ok && s.Availability != 1 {
			t.Fatalf("an eligible pair has availability %v", s.Availability)
		}
		if ok, why := Eligible(j, f); !ok && why == ReasonOverBudget && s.PriceFit != 0 {
			t.Fatalf("a pair refused as over budget has price fit %v", s.PriceFit)
		}
	}
}
