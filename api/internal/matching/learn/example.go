package learn

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// FeatureNames are the scoring signals of an Example, in the order of Example.Features and of every
// weight vector this package takes or returns (the score package's Weights.Vector order).
var FeatureNames = [...]string{"similarity", "skill_coverage", "rating", "price_fit", "availability"}

// NumFeatures is the length of the engine's feature and weight vectors. Train and NDCG accept any
// length as long as every example and weight vector agree.
const NumFeatures = len(FeatureNames)

// Labels: how far a shown item got. Each level implies the ones below it.
const (
	LabelShown     = 0 // shown, nothing more (or dismissed)
	LabelOpened    = 1 // the item was opened
	LabelApplied   = 2 // a proposal was made
	LabelHired     = 3 // a contract was made
	LabelCompleted = 4 // the contract was completed and rated well (at least GoodRating)
	MaxLabel       = LabelCompleted
)

// GoodRating is the lowest rating (of 5) of a completed contract that earns LabelCompleted; a
// completed contract rated lower stays at LabelHired.
const GoodRating = 4

// Example is one item of one shown list.
type Example struct {
	ListID   string    // the list it was shown in (the list_id of the matching response)
	ItemID   string    // the freelancer or job shown, for joins and fairness gates
	At       time.Time // when the list was shown
	Position int       // 1-based position in the list
	Features []float64 // the scoring signals at the time it was shown, in FeatureNames order
	Label    int       // LabelShown … LabelCompleted
	// Propensity is the probability that the position was examined at all, in (0, 1]
	// (ExaminationPropensity). Zero or less means unknown and counts as 1: no correction.
	Propensity float64
}

// ExaminationPropensity is the examination probability of a position under the power-law position
// bias model P(examine | position) = 1 / position^eta (eta = 0: no bias; 1 is typical of ranked lists).
// Positions below 1 count as 1.
func ExaminationPropensity(position int, eta float64) float64 {
	if position < 1 {
		position = 1
	}
	return 1 / math.Pow(float64(position), eta)
}

// Dot is the linear score of a feature vector under a weight vector (missing entries count as 0).
func Dot(features, weights []float64) float64 {
	s := 0.0
	for i := range min(len(features), len(weights)) {
		s += features[i] * weights[i]
	}
	return s
}

// Group splits examples into their lists, deterministically whatever the input order: lists ordered
// by the time they were shown (their earliest At), then ListID; items inside a list by Position,
// then ItemID. The examples are copied by value; their Features slices are shared.
func Group(examples []Example) [][]Example {
	byID := map[string][]Example{}
	for _, e := range examples {
		byID[e.ListID] = append(byID[e.ListID], e)
	}
	lists := make([][]Example, 0, len(byID))
	for _, l := range byID {
		slices.SortStableFunc(l, func(a, b Example) int {
			return cmp.Or(cmp.Compare(a.Position, b.Position), cmp.Compare(a.ItemID, b.ItemID))
		})
		lists = append(lists, l)
	}
	slices.SortFunc(lists, func(a, b []Example) int {
		return cmp.Or(start(a).Compare(start(b)), cmp.Compare(a[0].ListID, b[0].ListID))
	})
	return lists
}

func start(list []Example) time.Time {
	t := list[0].At
	for _, e := range list[1:] {
		if e.At.Before(t) {
			t = e.At
		}
	}
	return t
}

// SplitByTime keeps whole lists together and splits them by time: the oldest frac of the lists go to
// train, and holdout gets every list shown at or after cut, the time the first holdout list was shown
// (lists shown at that same instant all go to holdout). frac is clamped to [0, 1]; cut is the zero
// time when holdout is empty.
func SplitByTime(examples []Example, frac float64) (train, holdout []Example, cut time.Time) {
	lists := Group(examples)
	frac = math.Max(0, math.Min(1, frac))
	n := int(math.Round(frac * float64(len(lists))))
	if n >= len(lists) {
		return flatten(lists), nil, time.Time{}
	}
	cut = start(lists[n])
	for _, l := range lists {
		if start(l).Before(cut) {
			train = append(train, l...)
		} else {
			holdout = append(holdout, l...)
		}
	}
	return train, holdout, cut
}

func flatten(lists [][]Example) []Example {
	var out []Example
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
