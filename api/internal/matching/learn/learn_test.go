package learn

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// list builds one list whose items are shown in the order given, each with one feature (its score
// under weight 1) and a label.
func list(id string, at time.Time, scores []float64, labels []int) []Example {
	var out []Example
	for i := range scores {
		out = append(out, Example{ListID: id, ItemID: id + string(rune('a'+i)), At: at, Position: i + 1,
			Features: []float64{scores[i]}, Label: labels[i]})
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestRankingNDCG(t *testing.T) {
	g := func(l int) float64 { return math.Exp2(float64(l)) - 1 }
	for name, c := range map[string]struct {
		labels []int
		k      int
		want   float64
	}{
		"ideal":             {[]int{3, 2, 0, 0}, 10, 1},
		"swapped":           {[]int{2, 3, 0}, 10, (g(2) + g(3)/math.Log2(3)) / (g(3) + g(2)/math.Log2(3))},
		"cut at k":          {[]int{0, 0, 4}, 2, 0},
		"beyond k in ideal": {[]int{1, 0, 4}, 1, 1 / g(4)},
		"nothing relevant":  {[]int{0, 0}, 10, 0},
		"empty":             {nil, 10, 0},
	} {
		if got := RankingNDCG(c.labels, c.k); !near(got, c.want) {
			t.Errorf("%s: RankingNDCG(%v, %d) = %v, want %v", name, c.labels, c.k, got, c.want)
		}
	}
}

func TestNDCGReranksEachList(t *testing.T) {
	ex := append(
		// Shown in the wrong order; weight 1 puts the 2 first, weight −1 leaves it last.
		list("a", t0, []float64{0.1, 0.5, 0.9}, []int{0, 1, 2}),
		// No positive label: left out of the mean.
		list("b", t0, []float64{0.3, 0.2}, []int{0, 0})...)
	if got := NDCG(ex, []float64{1}, 10); !near(got, 1) {
		t.Errorf("NDCG with the right weight = %v, want 1", got)
	}
	g := func(l int) float64 { return math.Exp2(float64(l)) - 1 }
	want := (g(1)/math.Log2(3) + g(2)/math.Log2(4)) / (g(2) + g(1)/math.Log2(3))
	if got := NDCG(ex, []float64{-1}, 10); !near(got, want) {
		t.Errorf("NDCG with the reversed weight = %v, want %v", got, want)
	}
	// Ties keep the shown order.
	if got := NDCG(ex, []float64{0}, 10); !near(got, want) {
		t.Errorf("NDCG with all scores tied = %v, want the shown order's %v", got, want)
	}
	if got := NDCG(list("c", t0, []float64{1}, []int{0}), []float64{1}, 10); got != 0 {
		t.Errorf("NDCG of lists without a positive label = %v, want 0", got)
	}
}

func TestNDCGWeighsGainsByInversePropensity(t *testing.T) {
	// Item x was opened at position 1 (always examined), item y at position 10 (examined one time in
	// ten): y's outcome is worth ten of x's, so ranking y first is the better ranking.
	ex := []Example{
		{ListID: "l", ItemID: "x", Position: 1, Propensity: 1, Features: []float64{1, 0}, Label: 1},
		{ListID: "l", ItemID: "y", Position: 10, Propensity: 0.1, Features: []float64{0, 1}, Label: 1},
	}
	xFirst, yFirst := NDCG(ex, []float64{1, 0}, 10), NDCG(ex, []float64{0, 1}, 10)
	// Gains 1 and 10 against the unweighted ideal 1 + 1/log2(3).
	ideal := 1 + 1/math.Log2(3)
	if !near(xFirst, (1+10/math.Log2(3))/ideal) || !near(yFirst, (10+1/math.Log2(3))/ideal) {
		t.Errorf("NDCG x first %v, y first %v; want %v and %v", xFirst, yFirst, (1+10/math.Log2(3))/ideal, (10+1/math.Log2(3))/ideal)
	}
	// The weight is clipped at EvalClip.
	ex[1].Propensity = 0.001
	if got := NDCG(ex, []float64{0, 1}, 10); !near(got, (EvalClip+1/math.Log2(3))/ideal) {
		t.Errorf("NDCG with propensity 0.001 = %v, want the clipped %v", got, (EvalClip+1/math.Log2(3))/ideal)
	}
}

func TestSplitByTime(t *testing.T) {
	var ex []Example
	for i := range 10 {
		ex = append(ex, list(string(rune('a'+i)), t0.Add(time.Duration(i)*time.Hour), []float64{1, 2}, []int{0, 1})...)
	}
	// A list shown at the same instant as the list the cut falls on goes to the holdout with it.
	ex = append(ex, list("z", t0.Add(7*time.Hour), []float64{1}, []int{1})...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(ex), func(i, j int) { ex[i], ex[j] = ex[j], ex[i] })

	train, holdout, cut := SplitByTime(ex, 0.65) // 11 lists: 7 for train, the cut at the 8th
	if !cut.Equal(t0.Add(7 * time.Hour)) {
		t.Fatalf("cut %v, want %v", cut, t0.Add(7*time.Hour))
	}
	if len(train)+len(holdout) != len(ex) {
		t.Fatalf("%d + %d examples after the split, want %d", len(train), len(holdout), len(ex))
	}
	side := map[string]string{}
	for name, part := range map[string][]Example{"train": train, "holdout": holdout} {
		for _, e := range part {
			if (name == "train") != e.At.Before(cut) {
				t.Errorf("list %s shown at %v is in %s with the cut at %v", e.ListID, e.At, name, cut)
			}
			if s, ok := side[e.ListID]; ok && s != name {
				t.Errorf("list %s is split between train and holdout", e.ListID)
			}
			side[e.ListID] = name
		}
	}
	if len(Group(train)) != 7 || len(Group(holdout)) != 4 {
		t.Errorf("%d train and %d holdout lists, want 7 and 4", len(Group(train)), len(Group(holdout)))
	}
	if tr, ho, c := SplitByTime(ex, 2); len(tr) != len(ex) || ho != nil || !c.IsZero() {
		t.Errorf("frac 2: %d train, %d holdout, cut %v; want everything in train and a zero cut", len(tr), len(ho), c)
	}
	if tr, ho, _ := SplitByTime(ex, -1); len(tr) != 0 || len(ho) != len(ex) {
		t.Errorf("frac −1: %d train, %d holdout; want everything in holdout", len(tr), len(ho))
	}
}

// ranked generates lists of items with dim random features in [0, 1], graded by a true linear
// utility, shown in random order with no position bias.
func ranked(seed uint64, lists, size int, truth []float64) []Example {
	rng := rand.New(rand.NewPCG(seed, 99))
	var out []Example
	for l := range lists {
		id := fmt.Sprintf("list-%04d", l)
		for p := range size {
			f := make([]float64, len(truth))
			for d := range f {
				f[d] = rng.Float64()
			}
			u := Dot(f, truth) + 0.05*rng.NormFloat64()
			label := min(MaxLabel, max(0, int(math.Floor((u-0.35)*6))))
			out = append(out, Example{ListID: id, ItemID: fmt.Sprintf("%s/%d", id, p), At: t0.Add(time.Duration(l) * time.Minute),
				Position: p + 1, Features: f, Label: label, Propensity: 1})
		}
	}
	return out
}

func cosine(a, b []float64) float64 {
	return Dot(a, b) / math.Sqrt(Dot(a, a)*Dot(b, b))
}

func TestTrainRecoversTheRanking(t *testing.T) {
	truth := []float64{0.1, 0.5, 0.3, 0.0, 0.1}
	ex := ranked(1, 300, 15, truth)
	train, holdout, _ := SplitByTime(ex, 0.7)
	for _, opt := range []Optimizer{Adam, GD} {
		o := DefaultTrainOptions()
		o.Optimizer = opt
		if opt == GD {
			o.LearningRate = 2
		}
		w, st, err := Train(train, o)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pairs == 0 || st.Lists == 0 || st.Steps != o.Epochs || !(st.FinalLoss < st.InitialLoss) {
			t.Errorf("%v: stats %+v: want pairs, lists, %d steps and a loss that fell", opt, st, o.Epochs)
		}
		sum := 0.0
		for _, x := range w {
			if x < 0 {
				t.Errorf("%v: weight %v below zero with NonNegative", opt, x)
			}
			sum += x
		}
		if !near(sum, 1) {
			t.Errorf("%v: weights %v sum to %v, want 1 with Normalize", opt, w, sum)
		}
		got, best := NDCG(holdout, w, 10), NDCG(holdout, truth, 10)
		t.Logf("%v: weights %.3f (truth %.2f), cosine %.3f, holdout NDCG@10 %.4f (truth %.4f), %+v", opt, w, truth, cosine(w, truth), got, best, st)
		if cosine(w, truth) < 0.95 || got < best-0.02 {
			t.Errorf("%v: trained weights %.3f (cosine %.3f with the truth, NDCG %.4f against %.4f) do not recover %.2f", opt, w, cosine(w, truth), got, best, truth)
		}
	}
}

func TestTrainIsDeterministic(t *testing.T) {
	ex := ranked(2, 60, 10, []float64{0.2, 0.4, 0.1, 0.2, 0.1})
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(ex), func(i, j int) { ex[i], ex[j] = ex[j], ex[i] })
	o := DefaultTrainOptions()
	o.BatchSize, o.MaxPairsPerList, o.Seed, o.Epochs = 64, 20, 7, 20
	a, sa, err := Train(ex, o)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(ex) // input order does not matter
	b, sb, _ := Train(ex, o)
	if !slices.Equal(a, b) || sa != sb {
		t.Errorf("two fits with seed 7: %v %+v and %v %+v", a, sa, b, sb)
	}
	if sa.Pairs > 20*60 {
		t.Errorf("%d pairs with MaxPairsPerList 20 over 60 lists", sa.Pairs)
	}
	o.Seed = 8
	if c, _, _ := Train(ex, o); slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 sampled the same pairs and batches: %v", c)
	}
}

// TestTrainCorrectsPositionBias: the logging ranker orders items by feature 0, which has nothing to
// do with relevance (feature 1 is all of it), and clients examine position p with probability 1/p.
// Without the correction the top positions' clicks make feature 0 look useful; with it, much less.
func TestTrainCorrectsPositionBias(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var ex []Example
	for l := range 800 {
		type item struct{ f0, f1 float64 }
		items := make([]item, 10)
		for i := range items {
			items[i] = item{rng.Float64(), rng.Float64()}
		}
		slices.SortFunc(items, func(a, b item) int { return cmp.Compare(b.f0, a.f0) })
		for p, it := range items {
			prop := ExaminationPropensity(p+1, 1)
			label := 0
			if rng.Float64() < prop && rng.Float64() < it.f1 {
				label = 1
			}
			ex = append(ex, Example{ListID: fmt.Sprintf("l%03d", l), Position: p + 1, At: t0, Features: []float64{it.f0, it.f1}, Label: label, Propensity: prop})
		}
	}
	o := DefaultTrainOptions()
	o.NonNegative, o.Normalize = false, false
	o.Clip = 1 // no correction
	naive, _, err := Train(ex, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Clip = 10
	ips, _, _ := Train(ex, o)
	rn, ri := naive[0]/naive[1], ips[0]/ips[1]
	t.Logf("weight of the position-only feature over the relevant one: %.3f without correction, %.3f with", rn, ri)
	if !(math.Abs(ri) < math.Abs(rn)/3) {
		t.Errorf("with the correction the irrelevant feature keeps %.3f of the relevant one's weight (%.3f without)", ri, rn)
	}
}

func TestTrainRefusesBadInput(t *testing.T) {
	good := ranked(3, 5, 5, []float64{0.5, 0.5})
	mismatched := append(slices.Clone(good), Example{ListID: "x", Features: []float64{1}, Label: 1})
	nan := append(slices.Clone(good), Example{ListID: "x", Features: []float64{math.NaN(), 1}, Label: 1})
	flat := list("f", t0, []float64{1, 2, 3}, []int{1, 1, 1})
	for name, c := range map[string]struct {
		ex     []Example
		mutate func(*TrainOptions)
		want   error
		field  string
	}{
		"no examples":     {nil, nil, ErrNoPairs, ""},
		"no pairs":        {flat, nil, ErrNoPairs, ""},
		"feature lengths": {mismatched, nil, ErrFeatures, ""},
		"not finite":      {nan, nil, ErrFeatures, ""},
		"init length":     {good, func(o *TrainOptions) { o.Init = []float64{1} }, ErrFeatures, ""},
		"epochs":          {good, func(o *TrainOptions) { o.Epochs = 0 }, nil, "Epochs"},
		"learning rate":   {good, func(o *TrainOptions) { o.LearningRate = math.NaN() }, nil, "LearningRate"},
		"l2":              {good, func(o *TrainOptions) { o.L2 = -1 }, nil, "L2"},
		"clip":            {good, func(o *TrainOptions) { o.Clip = 0.5 }, nil, "Clip"},
		"optimizer":       {good, func(o *TrainOptions) { o.Optimizer = 9 }, nil, "Optimizer"},
		"batch":           {good, func(o *TrainOptions) { o.BatchSize = -1 }, nil, "BatchSize"},
		"pairs per list":  {good, func(o *TrainOptions) { o.MaxPairsPerList = -1 }, nil, "MaxPairsPerList"},
		"init not finite": {good, func(o *TrainOptions) { o.Init = []float64{math.Inf(1), 0} }, nil, "Init"},
	} {
		o := DefaultTrainOptions()
		if c.mutate != nil {
			c.mutate(&o)
		}
		w, _, err := Train(c.ex, o)
		switch {
		case err == nil:
			t.Errorf("%s: Train returned %v, want an error", name, w)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: error %v, want %v", name, err, c.want)
		case c.field != "" && !strings.Contains(err.Error(), c.field):
			t.Errorf("%s: error %q does not name %s", name, err, c.field)
		}
	}
}

func TestEvaluate(t *testing.T) {
	holdout := ranked(4, 100, 10, []float64{0.6, 0.4})
	good := Model{ID: "good", Version: 2, Weights: []float64{0.6, 0.4}}
	worse := Model{ID: "worse", Version: 3, Weights: []float64{0, 1}}
	negated := Model{ID: "negated", Version: 4, Weights: []float64{-0.6, -0.4}}
	passing := func(Model, []Example) (bool, string) { return true, "impact ratio 0.93 ≥ 0.8" }
	failing := func(Model, []Example) (bool, string) { return false, "impact ratio 0.61 < 0.8 for country=IN" }
	for name, c := range map[string]struct {
		cand, serving  Model
		holdout        []Example
		gate           Gate
		better, passed bool
		promote        bool
		reason         string
	}{
		"better, gate passes":  {good, worse, holdout, passing, true, true, true, "impact ratio 0.93"},
		"better, no gate":      {good, worse, holdout, nil, true, true, true, "no fairness gate"},
		"better, gate refuses": {good, worse, holdout, failing, true, false, false, "refused by the fairness gate: NDCG@10"},
		"worse":                {worse, good, holdout, passing, false, false, false, "not better"},
		"negated":              {negated, good, holdout, passing, false, false, false, "not better"},
		"same model":           {good, good, holdout, nil, false, false, false, "not better"},
		"wrong length":         {Model{Weights: []float64{1}}, good, holdout, nil, false, false, false, "candidate has 1 weights, the holdout 2 features"},
		"serving not finite":   {good, Model{Weights: []float64{math.NaN(), 1}}, holdout, nil, false, false, false, "serving model has a weight that is not finite"},
		"empty holdout":        {good, worse, nil, nil, false, false, false, "no list with a positive label"},
	} {
		asked := false
		gate := c.gate
		if gate != nil {
			inner := gate
			gate = func(m Model, h []Example) (bool, string) {
				asked = true
				if m.ID != c.cand.ID || len(h) != len(c.holdout) {
					t.Errorf("%s: the gate was asked about %q with %d examples", name, m.ID, len(h))
				}
				return inner(m, h)
			}
		}
		got := Evaluate(c.cand, c.serving, c.holdout, gate)
		if got.Better != c.better || got.GatePassed != c.passed || got.Promote != c.promote || !strings.Contains(got.Reason, c.reason) {
			t.Errorf("%s: %+v; want better %v, gate passed %v, promote %v, a reason with %q", name, got, c.better, c.passed, c.promote, c.reason)
		}
		if asked && !c.better {
			t.Errorf("%s: the gate was asked about a candidate that is not better", name)
		}
		if c.better && (got.Lists != 100 || !(got.CandidateNDCG > got.ServingNDCG)) {
			t.Errorf("%s: %d lists, NDCG %v against %v", name, got.Lists, got.CandidateNDCG, got.ServingNDCG)
		}
	}
	f := Evaluate(good, worse, holdout, nil).Figures()
	if f["ndcg@10"] != NDCG(holdout, good.Weights, 10) || f["serving_ndcg@10"] != NDCG(holdout, worse.Weights, 10) || f["holdout_lists"] != 100 {
		t.Errorf("figures %v", f)
	}
}

func TestExaminationPropensity(t *testing.T) {
	for _, c := range []struct {
		pos  int
		eta  float64
		want float64
	}{{1, 1, 1}, {4, 1, 0.25}, {4, 0.5, 0.5}, {10, 0, 1}, {0, 1, 1}} {
		if got := ExaminationPropensity(c.pos, c.eta); !near(got, c.want) {
			t.Errorf("ExaminationPropensity(%d, %v) = %v, want %v", c.pos, c.eta, got, c.want)
		}
	}
}
