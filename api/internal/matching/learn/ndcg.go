package learn

import (
	"cmp"
	"math"
	"slices"
)

// EvalClip bounds the inverse propensity NDCG weighs a gain by.
const EvalClip = 10

// NDCG is the mean NDCG@k of the lists in examples when each list is re-ranked by the linear score
// under weights, with the labels as graded relevance (gain 2^label − 1, discount log2(1 + rank)).
// Ties in score keep the shown order (Position). Lists with no positive label say nothing about a
// ranking and are left out; with none left NDCG is 0.
//
// On logged outcomes a label says as much about where the item was shown as about the item: an
// outcome at position 1 is ten times as likely as the same item's at position 10 only because it was
// looked at ten times as often, and a metric that ignores this rewards whatever ranking produced the
// log. So each gain in the DCG is divided by its example's Propensity (clipped at EvalClip), which
// estimates what the item would have earned had it been examined wherever it is ranked (the
// propensity-weighted metric of Agarwal et al. 2019). The ideal DCG that normalises it is that of the
// unweighted labels: normalising by the ideal of the weighted gains instead would shrink exactly the
// lists where a rarely examined item did well, the lists where a better ranking differs from the
// logged one, and measurably favours the logging ranking. With propensities of 1 (or none) this is
// the plain NDCG; on logged outcomes it is an estimate and may exceed 1.
func NDCG(examples []Example, weights []float64, k int) float64 {
	mean, _ := ndcg(Group(examples), weights, k)
	return mean
}

// ndcg returns the mean over the lists that count, and how many counted.
func ndcg(lists [][]Example, weights []float64, k int) (float64, int) {
	sum, n := 0.0, 0
	for _, l := range lists {
		type scored struct {
			score float64
			pos   int
			gain  float64 // weighted by inverse propensity
		}
		s := make([]scored, len(l))
		raw := make([]float64, len(l))
		for i, e := range l {
			raw[i] = gain(e.Label)
			s[i] = scored{Dot(e.Features, weights), i, raw[i] / math.Max(propensity(e), 1.0/EvalClip)}
		}
		slices.SortStableFunc(s, func(a, b scored) int {
			return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.pos, b.pos))
		})
		gains := make([]float64, len(s))
		for i, x := range s {
			gains[i] = x.gain
		}
		if idcg := idealDCG(raw, k); idcg > 0 {
			sum += dcg(gains, k) / idcg
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// RankingNDCG is the NDCG@k of one ranking, given the labels of its items in ranked order. The ideal
// ranking is those same labels sorted, so labels must cover the whole set that was ranked (every
// candidate), not only the top k. A ranking with no positive label has NDCG 0.
func RankingNDCG(labels []int, k int) float64 {
	v, _ := rankingNDCG(labels, k)
	return v
}

func rankingNDCG(labels []int, k int) (float64, bool) {
	gains := make([]float64, len(labels))
	for i, l := range labels {
		gains[i] = gain(l)
	}
	return gainsNDCG(gains, k)
}

func gain(label int) float64 {
	if label <= 0 {
		return 0
	}
	return math.Exp2(float64(label)) - 1
}

func propensity(e Example) float64 {
	if e.Propensity <= 0 || e.Propensity > 1 {
		return 1
	}
	return e.Propensity
}

func gainsNDCG(gains []float64, k int) (float64, bool) {
	idcg := idealDCG(gains, k)
	if idcg == 0 {
		return 0, false
	}
	return dcg(gains, k) / idcg, true
}

func idealDCG(gains []float64, k int) float64 {
	ideal := slices.Clone(gains)
	slices.SortFunc(ideal, func(a, b float64) int { return cmp.Compare(b, a) })
	return dcg(ideal, k)
}

func dcg(gains []float64, k int) float64 {
	s := 0.0
	for i, g := range gains {
		if i >= k {
			break
		}
		s += g / math.Log2(float64(i)+2)
	}
	return s
}
