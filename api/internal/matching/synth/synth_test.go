package synth

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/matching/learn"
)

var hand = []float64{0.45, 0.30, 0.10, 0.10, 0.05}

func small() Options {
	o := DefaultOptions()
	o.Freelancers, o.Jobs = 300, 120
	return o
}

func TestGenerateIsAFunctionOfTheSeed(t *testing.T) {
	a, b, c := Generate(3, small()), Generate(3, small()), Generate(4, small())
	if !reflect.DeepEqual(a.Freelancers, b.Freelancers) || !reflect.DeepEqual(a.Jobs, b.Jobs) || !reflect.DeepEqual(a.Skills, b.Skills) {
		t.Fatal("two markets of seed 3 differ")
	}
	for j := range a.Jobs {
		for f := range a.Freelancers {
			if a.Utility(j, f) != b.Utility(j, f) {
				t.Fatalf("utility of (%d, %d) differs between two markets of seed 3", j, f)
			}
		}
	}
	if reflect.DeepEqual(a.Freelancers, c.Freelancers) {
		t.Error("seeds 3 and 4 gave the same freelancers")
	}
	ia := Simulate(a, a.Ranker(hand), DefaultSimOptions())
	ib := Simulate(b, b.Ranker(hand), DefaultSimOptions())
	if !reflect.DeepEqual(ia, ib) {
		t.Error("two simulations with the same options differ")
	}
}

func TestMarketShape(t *testing.T) {
	o := small()
	m := Generate(5, o)
	if len(m.Freelancers) != o.Freelancers || len(m.Jobs) != o.Jobs || len(m.Skills) != len(catalog) {
		t.Fatalf("%d freelancers, %d jobs, %d clusters", len(m.Freelancers), len(m.Jobs), len(m.Skills))
	}
	known := map[string]bool{}
	for _, c := range m.Skills {
		for _, s := range c {
			known[s] = true
		}
	}
	regionOf := map[string]string{}
	for _, r := range regions {
		for _, c := range r.countries {
			regionOf[c] = r.name
		}
	}
	ids := map[string]bool{}
	for _, f := range m.Freelancers {
		if ids[f.ID] || regionOf[f.Country] != f.Region || f.HourlyRate <= 0 || f.Quality < 0 || f.Quality > 1 ||
			len(f.Skills) < 2 || len(f.Vec) != o.Dims || (f.Reviews > 0) != (f.AvgRating >= 1 && f.AvgRating <= 5) {
			t.Fatalf("bad freelancer %+v", f)
		}
		ids[f.ID] = true
		for _, s := range f.Skills {
			if !known[s] || strings.Contains(s, ",") {
				t.Fatalf("freelancer %s has skill %q", f.ID, s)
			}
		}
		if g := f.Groups(); g["country"] != f.Country || g["region"] != f.Region || (f.Declared != nil && g["gender"] == "") {
			t.Fatalf("groups of %s: %v", f.ID, g)
		}
	}
	for i, j := range m.Jobs {
		if i > 0 && j.PostedAt.Before(m.Jobs[i-1].PostedAt) {
			t.Fatalf("job %s posted before the job listed ahead of it", j.ID)
		}
		if j.PostedAt.Before(o.Start) || !j.PostedAt.Before(o.Start.Add(o.Span)) || regionOf[j.Country] != j.Region ||
			len(j.Skills) < 2 || j.BudgetMin > j.BudgetMax || j.Title == "" || !strings.Contains(j.Description, j.Skills[0]) {
			t.Fatalf("bad job %+v", j)
		}
	}

	// Every grade occurs among the candidates, and the candidates obey the hard filters.
	var grades [5]int
	for j := range m.Jobs {
		job := m.Jobs[j]
		for _, f := range m.Candidates(j) {
			fl := m.Freelancers[f]
			if !fl.Available || fl.Region != job.Region || (!job.Remote && fl.Country != job.Country) ||
				(job.BudgetMax > 0 && fl.HourlyRate > 2*job.BudgetMax) {
				t.Fatalf("freelancer %s is a candidate for %s against the hard filters", fl.ID, job.ID)
			}
			x := m.Features(j, f)
			if len(x) != learn.NumFeatures {
				t.Fatalf("%d features", len(x))
			}
			for d, v := range x {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("feature %s of (%s, %s) is %v", learn.FeatureNames[d], job.ID, fl.ID, v)
				}
			}
			grades[m.Utility(j, f)]++
		}
	}
	t.Logf("grades among candidates: %v", grades)
	for g, n := range grades {
		if n == 0 {
			t.Errorf("no candidate pair of grade %d", g)
		}
	}
	if grades[0] < grades[4] {
		t.Errorf("more excellent pairs than useless ones: %v", grades)
	}
}

// TestUtilityFollowsTheTruth: the utility rises with skill overlap and quality, and an unavailable
// freelancer or one abroad for an on-site job is of no use.
func TestUtilityFollowsTheTruth(t *testing.T) {
	m := Generate(6, small())
	var sumOverlap, nOverlap, sumNone, nNone, sumHigh, nHigh, sumLow, nLow float64
	for j := range m.Jobs {
		for f, fl := range m.Freelancers {
			u := float64(m.Utility(j, f))
			if !fl.Available || (!m.Jobs[j].Remote && m.Jobs[j].Country != fl.Country) {
				if u != 0 {
					t.Fatalf("utility %v of %s for %s", u, fl.ID, m.Jobs[j].ID)
				}
				continue
			}
			if m.Features(j, f)[1] >= 0.5 {
				sumOverlap, nOverlap = sumOverlap+u, nOverlap+1
			} else if m.Features(j, f)[1] == 0 {
				sumNone, nNone = sumNone+u, nNone+1
			}
			if fl.Quality > 0.7 {
				sumHigh, nHigh = sumHigh+u, nHigh+1
			} else if fl.Quality < 0.3 {
				sumLow, nLow = sumLow+u, nLow+1
			}
		}
	}
	t.Logf("mean utility: half the skills or more %.2f, none %.2f; quality > 0.7 %.2f, < 0.3 %.2f",
		sumOverlap/nOverlap, sumNone/nNone, sumHigh/nHigh, sumLow/nLow)
	if !(sumOverlap/nOverlap > sumNone/nNone+1) || !(sumHigh/nHigh > sumLow/nLow+0.3) {
		t.Error("utility does not follow skill overlap and quality")
	}
}

func TestBiasChangesObservationsNotUtility(t *testing.T) {
	o := small()
	fair := Generate(8, o)
	o.Bias = Bias{Attr: "region", Value: "ap-south", Strength: 0.6}
	biased := Generate(8, o)

	var fairRating, biasedRating, n float64
	for f := range fair.Freelancers {
		a, b := fair.Freelancers[f], biased.Freelancers[f]
		for j := range fair.Jobs {
			if fair.Utility(j, f) != biased.Utility(j, f) {
				t.Fatalf("the bias changed the utility of (%d, %d)", j, f)
			}
		}
		if a.Region != "ap-south" {
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("the bias changed freelancer %s outside its group", a.ID)
			}
			continue
		}
		if b.Reviews > a.Reviews || (b.Reviews > 0 && b.AvgRating > a.AvgRating) {
			t.Fatalf("%s: %d reviews of %.2f without bias, %d of %.2f with", a.ID, a.Reviews, a.AvgRating, b.Reviews, b.AvgRating)
		}
		fairRating += fair.Features(0, f)[2]
		biasedRating += biased.Features(0, f)[2]
		n++
	}
	if n == 0 || !(biasedRating/n < fairRating/n-0.05) {
		t.Fatalf("rating signal of the group %.3f with bias, %.3f without", biasedRating/n, fairRating/n)
	}

	// The same lists (ranked without the rating, which the bias changed) lose a share of the
	// group's opens; everyone else's outcomes are drawn identically.
	rank := func(m *Market) func(int) []int { return m.Ranker([]float64{0.5, 0.5, 0, 0, 0}) }
	so := DefaultSimOptions()
	a, b := Simulate(fair, rank(fair), so), Simulate(biased, rank(biased), so)
	var opensFair, opensBiased float64
	for i := range a {
		for k, s := range a[i].Items {
			s2 := b[i].Items[k]
			if biased.Freelancers[s.Freelancer].Region != "ap-south" {
				if s != s2 {
					t.Fatalf("outcome of %s in %s changed outside the group: %+v, %+v", biased.Freelancers[s.Freelancer].ID, a[i].ListID, s, s2)
				}
				continue
			}
			if s2.Opened && !s.Opened {
				t.Fatalf("the bias opened an item that was not opened without it")
			}
			if s.Opened {
				opensFair++
			}
			if s2.Opened {
				opensBiased++
			}
		}
	}
	t.Logf("opens of the group: %v without bias, %v with strength 0.6", opensFair, opensBiased)
	if ratio := opensBiased / opensFair; opensFair < 50 || ratio < 0.25 || ratio > 0.55 {
		t.Errorf("the group kept %.2f of its opens under a bias of strength 0.6 (about 0.4 expected)", ratio)
	}
}

func TestSimulatePositionBias(t *testing.T) {
	m := Generate(9, small())
	so := DefaultSimOptions()
	so.Eta, so.Views = 0.8, 10
	imps := Simulate(m, m.Ranker(hand), so)
	examined := make([]float64, so.ListSize+1)
	shown := make([]float64, so.ListSize+1)
	opensByUtility, examinedByUtility := [5]float64{}, [5]float64{}
	seen := map[string]bool{}
	for _, imp := range imps {
		if seen[imp.ListID] || len(imp.Items) > so.ListSize {
			t.Fatalf("list %s repeated or too long", imp.ListID)
		}
		seen[imp.ListID] = true
		if want := m.Jobs[imp.Job].PostedAt; imp.At.Before(want) || imp.At.After(want.Add(time.Duration(so.Views)*so.Gap)) {
			t.Fatalf("list %s shown at %v for a job posted at %v", imp.ListID, imp.At, want)
		}
		ranked := m.Ranker(hand)(imp.Job)
		for p, s := range imp.Items {
			if s.Position != p+1 || s.Freelancer != ranked[p] || math.Abs(s.Propensity-math.Pow(float64(p+1), -so.Eta)) > 1e-12 {
				t.Fatalf("item %d of %s: %+v", p, imp.ListID, s)
			}
			if (s.Opened && !s.Examined) || (s.Applied && !s.Opened) || (s.Hired && !s.Applied) || (s.Completed && !s.Hired) || (s.Completed != (s.Rating > 0)) {
				t.Fatalf("outcomes out of order: %+v", s)
			}
			shown[s.Position]++
			u := m.Utility(imp.Job, s.Freelancer)
			if s.Examined {
				examined[s.Position]++
				examinedByUtility[u]++
				if s.Opened {
					opensByUtility[u]++
				}
			}
		}
	}
	for _, p := range []int{1, 2, 5, 10, 20} {
		got, want := examined[p]/shown[p], math.Pow(float64(p), -so.Eta)
		if math.Abs(got-want) > 4*math.Sqrt(want*(1-want)/shown[p])+0.01 {
			t.Errorf("position %d examined %.3f of the time, want %.3f", p, got, want)
		}
	}
	for u := 1; u < 5; u++ {
		if examinedByUtility[u] > 100 && examinedByUtility[u-1] > 100 && !(opensByUtility[u]/examinedByUtility[u] > opensByUtility[u-1]/examinedByUtility[u-1]) {
			t.Errorf("open rate of utility %d not above utility %d's: %v of %v", u, u-1, opensByUtility, examinedByUtility)
		}
	}
	ex, items := m.Examples(imps), 0
	for _, imp := range imps {
		items += len(imp.Items)
	}
	if len(ex) != items || ex[0].ListID != imps[0].ListID || ex[0].Label != imps[0].Items[0].Label() ||
		ex[0].Propensity != imps[0].Items[0].Propensity || ex[0].ItemID != m.Freelancers[imps[0].Items[0].Freelancer].ID {
		t.Errorf("%d examples from %d shown items; first %+v", len(ex), items, ex[0])
	}

	// Exploration shows candidates from below the list.
	so.Explore, so.Views = 0.5, 1
	explored := 0
	for _, imp := range Simulate(m, m.Ranker(hand), so) {
		top := m.Ranker(hand)(imp.Job)
		for p, s := range imp.Items {
			if p < 3 && s.Freelancer != top[p] {
				t.Fatalf("exploration replaced position %d", p+1)
			}
			if !slices.Contains(top[:min(len(top), so.ListSize)], s.Freelancer) {
				explored++
			}
		}
	}
	if explored == 0 {
		t.Error("exploration showed nobody from below the list")
	}
}

func TestBaselineJaccard(t *testing.T) {
	m := Generate(10, small())
	for j := range m.Jobs[:20] {
		r := BaselineJaccard(m, j)
		c := m.Candidates(j)
		if !slices.Equal(slices.Sorted(slices.Values(r)), c) {
			t.Fatalf("BaselineJaccard(%d) is not a permutation of the candidates", j)
		}
		prev := 2.0
		for _, f := range r {
			inter, union := 0, map[string]bool{}
			for _, s := range m.Jobs[j].Skills {
				union[s] = true
			}
			for _, s := range m.Freelancers[f].Skills {
				if slices.Contains(m.Jobs[j].Skills, s) {
					inter++
				}
				union[s] = true
			}
			jac := float64(inter) / float64(len(union))
			if jac > prev {
				t.Fatalf("BaselineJaccard(%d) not in decreasing order of Jaccard", j)
			}
			prev = jac
		}
	}
}

func TestPriceFit(t *testing.T) {
	for _, c := range []struct{ rate, max, want float64 }{
		{50, 0, 1}, {40, 50, 1}, {50, 50, 1}, {75, 50, 0.5}, {100, 50, 0}, {200, 50, 0},
	} {
		if got := priceFit(c.rate, c.max); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("priceFit(%v, %v) = %v, want %v", c.rate, c.max, got, c.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for name, c := range map[string]struct {
		o     Options
		field string
	}{
		"freelancers":   {Options{Freelancers: -1}, "Freelancers"},
		"clusters":      {Options{Clusters: 99}, "Clusters"},
		"strength":      {Options{Bias: Bias{Attr: "region", Value: "eu-west", Strength: 1.5}}, "Strength"},
		"unnamed group": {Options{Bias: Bias{Strength: 0.5}}, "Bias.Attr"},
	} {
		if err := c.o.Validate(); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error naming %s", name, err, c.field)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
	for name, so := range map[string]SimOptions{"eta": {Eta: -1}, "explore": {Explore: 2}, "list": {ListSize: -1}} {
		if so.Validate() == nil {
			t.Errorf("%s: SimOptions %+v accepted", name, so)
		}
	}
}

// TestBiasReachesWhatIsObserved: against a group the market is biased against, the simulated hires
// fall below four fifths of the others' rate (the selection rate the fairness detector compares),
// while without the bias they do not; and through the group's review histories the bias reaches
// the hand-set ranking itself, though the group's utility is the same.
func TestBiasReachesWhatIsObserved(t *testing.T) {
	measure := func(m *Market) (impact, top float64) {
		rank := m.Ranker(hand)
		var hired, shown [2]float64
		for _, imp := range Simulate(m, rank, DefaultSimOptions()) {
			for _, s := range imp.Items {
				g := 0
				if m.Freelancers[s.Freelancer].Declared["gender"] == "woman" {
					g = 1
				}
				shown[g]++
				if s.Hired {
					hired[g]++
				}
			}
		}
		var inTop, nTop float64
		for j := range m.Jobs {
			for _, f := range rank(j)[:min(10, len(rank(j)))] {
				if m.Freelancers[f].Declared["gender"] == "woman" {
					inTop++
				}
				nTop++
			}
		}
		return (hired[1] / shown[1]) / (hired[0] / shown[0]), inTop / nTop
	}
	o := DefaultOptions()
	fairImpact, fairTop := measure(Generate(12, o))
	o.Bias = Bias{Attr: "gender", Value: "woman", Strength: 0.5}
	biasedImpact, biasedTop := measure(Generate(12, o))
	t.Logf("women's hire rate over the others': %.2f without bias, %.2f with strength 0.5; their share of the top 10: %.3f and %.3f",
		fairImpact, biasedImpact, fairTop, biasedTop)
	if !(fairImpact >= 0.8) || !(biasedImpact < 0.8) {
		t.Errorf("impact ratio of hires %.2f without bias and %.2f with: want ≥ 0.8 and < 0.8", fairImpact, biasedImpact)
	}
	if !(biasedTop < fairTop) {
		t.Errorf("the bias did not lower the group's share of the top 10: %.3f → %.3f", fairTop, biasedTop)
	}
}
