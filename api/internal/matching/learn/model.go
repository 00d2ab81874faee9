package learn

import (
	"fmt"
	"math"
	"time"
)

// EvalK is the cut-off of the NDCG that Evaluate compares models on.
const EvalK = 10

// Model is one versioned set of scoring weights of one region. Models are kept after they stop
// serving, so any earlier version can be served again.
type Model struct {
	ID        string
	Region    string
	Version   int
	Weights   []float64 // in FeatureNames order
	TrainedAt time.Time
	// Figures are the model's evaluation figures, by name: "ndcg@10", "serving_ndcg@10", the fairness
	// figures of the gate, training statistics.
	Figures map[string]float64
}

// Score is the model's linear score of a feature vector.
func (m Model) Score(features []float64) float64 { return Dot(features, m.Weights) }

// Gate is the fairness gate a candidate must pass to be promoted. It sees the candidate and the
// holdout Evaluate ranks (the ItemIDs let it look up each item's groups) and says whether the
// candidate may serve, with a reason either way.
type Gate func(candidate Model, holdout []Example) (pass bool, reason string)

// Comparison is the outcome of Evaluate.
type Comparison struct {
	CandidateNDCG float64 // NDCG@EvalK of the candidate on the holdout
	ServingNDCG   float64 // NDCG@EvalK of the serving model on the same holdout
	Lists         int     // holdout lists with at least one positive label (the ones that count)
	Better        bool    // the candidate ranks strictly better
	GatePassed    bool    // the fairness gate let it through (false when it was not asked)
	Promote       bool    // Better and GatePassed: the candidate may serve
	Reason        string  // why, in one sentence, for the operator and the model's record
}

// Figures are the comparison's numbers under the names a Model's Figures use.
func (c Comparison) Figures() map[string]float64 {
	return map[string]float64{
		"ndcg@10":         c.CandidateNDCG,
		"serving_ndcg@10": c.ServingNDCG,
		"holdout_lists":   float64(c.Lists),
	}
}

// Evaluate compares candidate with serving on holdout (examples of lists the candidate was not
// trained on, e.g. SplitByTime's holdout) by NDCG@EvalK, and decides whether the candidate may be
// promoted: only when it ranks strictly better and the fairness gate passes it. A nil gate passes
// every candidate. The gate is asked only about a candidate that is better. A holdout with no
// graded list, or weights that do not fit its features, promote nothing.
func Evaluate(candidate, serving Model, holdout []Example, gate Gate) Comparison {
	var c Comparison
	dim := -1
	if len(holdout) > 0 {
		dim = len(holdout[0].Features)
	}
	for _, m := range []struct {
		name string
		w    []float64
	}{{"candidate", candidate.Weights}, {"serving model", serving.Weights}} {
		if len(m.w) != dim && dim >= 0 {
			c.Reason = fmt.Sprintf("the %s has %d weights, the holdout %d features", m.name, len(m.w), dim)
			return c
		}
		for _, x := range m.w {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				c.Reason = fmt.Sprintf("the %s has a weight that is not finite", m.name)
				return c
			}
		}
	}
	lists := Group(holdout)
	c.CandidateNDCG, c.Lists = ndcg(lists, candidate.Weights, EvalK)
	c.ServingNDCG, _ = ndcg(lists, serving.Weights, EvalK)
	if c.Lists == 0 {
		c.Reason = "the holdout has no list with a positive label"
		return c
	}
	c.Better = c.CandidateNDCG > c.ServingNDCG
	if !c.Better {
		c.Reason = fmt.Sprintf("not better: NDCG@%d %.4f against the serving model's %.4f on %d lists",
			EvalK, c.CandidateNDCG, c.ServingNDCG, c.Lists)
		return c
	}
	why := "no fairness gate"
	c.GatePassed = true
	if gate != nil {
		c.GatePassed, why = gate(candidate, holdout)
	}
	c.Promote = c.GatePassed
	verdict := "promote"
	if !c.GatePassed {
		verdict = "refused by the fairness gate"
	}
	c.Reason = fmt.Sprintf("%s: NDCG@%d %.4f against the serving model's %.4f on %d lists; %s",
		verdict, EvalK, c.CandidateNDCG, c.ServingNDCG, c.Lists, why)
	return c
}
