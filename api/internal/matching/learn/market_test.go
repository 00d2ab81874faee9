package learn_test

import (
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/matching/learn"
	"github.com/8thdegree/meridian/api/internal/matching/synth"
)

// handSet are the engine's hand-set weights (score.Default), in learn.FeatureNames order.
var handSet = []float64{0.45, 0.30, 0.10, 0.10, 0.05}

// TestTrainedModelBeatsHandSetWeights is the learning loop end to end on a synthetic market:
// outcomes are simulated for lists ranked by the hand-set weights, with position bias, over 90 days;
// a model is trained on the first 70% of the lists by time; on the jobs posted after the cut, every
// candidate graded by the hidden utility, it ranks better than the hand-set weights (and both better
// than the Jaccard overlap of skills the engine used before), and Evaluate promotes it over them,
// while it refuses a deliberately worse model.
func TestTrainedModelBeatsHandSetWeights(t *testing.T) {
	m := synth.Generate(11, synth.DefaultOptions())
	sim := synth.DefaultSimOptions()
	sim.Seed = 11
	logged := m.Examples(synth.Simulate(m, m.Ranker(handSet), sim))
	train, observedHoldout, cut := learn.SplitByTime(logged, 0.7)

	opts := learn.DefaultTrainOptions()
	weights, stats, err := learn.Train(train, opts)
	if err != nil {
		t.Fatal(err)
	}
	noIPS := opts
	noIPS.Clip = 1
	uncorrected, _, err := learn.Train(train, noIPS)
	if err != nil {
		t.Fatal(err)
	}

	jobs := m.JobsPostedFrom(cut)
	holdout := m.UtilityLists(jobs)
	jaccard := 0.0
	for _, j := range jobs {
		ranked := synth.BaselineJaccard(m, j)
		grades := make([]int, len(ranked))
		for i, f := range ranked {
			grades[i] = m.Utility(j, f)
		}
		jaccard += learn.RankingNDCG(grades, 10)
	}
	jaccard /= float64(len(jobs))
	handNDCG, trainedNDCG := learn.NDCG(holdout, handSet, 10), learn.NDCG(holdout, weights, 10)
	t.Logf("%d logged lists (%d examples) before %s for training, %d jobs after it graded by utility", stats.Lists, len(train), cut.Format(time.DateOnly), len(jobs))
	t.Logf("trained weights %.3f (%+v)", weights, stats)
	t.Logf("NDCG@10 on the utility holdout: Jaccard baseline %.4f, hand-set %.4f, trained %.4f (trained without the propensity correction %.4f)",
		jaccard, handNDCG, trainedNDCG, learn.NDCG(holdout, uncorrected, 10))
	t.Logf("propensity-weighted NDCG@10 on the logged holdout outcomes: hand-set %.4f, trained %.4f",
		learn.NDCG(observedHoldout, handSet, 10), learn.NDCG(observedHoldout, weights, 10))

	if !(handNDCG > jaccard) {
		t.Errorf("hand-set weights (%.4f) do not beat the Jaccard baseline (%.4f)", handNDCG, jaccard)
	}
	serving := learn.Model{ID: "hand-set", Region: "eu-west", Version: 1, Weights: handSet}
	candidate := learn.Model{ID: "trained", Region: "eu-west", Version: 2, Weights: weights, TrainedAt: cut}
	gateAsked := false
	c := learn.Evaluate(candidate, serving, holdout, func(m learn.Model, h []learn.Example) (bool, string) {
		gateAsked = true
		return true, "no group below four fifths"
	})
	t.Logf("trained against hand-set: %s", c.Reason)
	if !c.Better || !c.GatePassed || !c.Promote || !gateAsked || c.CandidateNDCG != trainedNDCG || c.ServingNDCG != handNDCG || c.Lists != len(jobs) {
		t.Errorf("the trained model is not promoted over the hand-set weights: %+v", c)
	}

	// The gate sees the holdout's items and can look up their groups.
	if i, ok := m.FreelancerIndex(holdout[0].ItemID); !ok || m.Freelancers[i].ID != holdout[0].ItemID {
		t.Errorf("FreelancerIndex(%q) = %d, %v", holdout[0].ItemID, i, ok)
	}

	negated := make([]float64, len(handSet))
	for i, w := range handSet {
		negated[i] = -w
	}
	worse := learn.Evaluate(learn.Model{ID: "negated", Version: 3, Weights: negated}, candidate, holdout, nil)
	t.Logf("negated against trained: %s", worse.Reason)
	if worse.Better || worse.Promote || !(worse.CandidateNDCG < jaccard) {
		t.Errorf("a model with negated weights is not refused: %+v", worse)
	}
}

// TestTrainedModelBeatsHandSetWeightsOnOtherMarkets: the result above is not one seed's luck.
func TestTrainedModelBeatsHandSetWeightsOnOtherMarkets(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		m := synth.Generate(seed, synth.DefaultOptions())
		sim := synth.DefaultSimOptions()
		sim.Seed = seed
		train, _, cut := learn.SplitByTime(m.Examples(synth.Simulate(m, m.Ranker(handSet), sim)), 0.7)
		weights, _, err := learn.Train(train, learn.DefaultTrainOptions())
		if err != nil {
			t.Fatal(err)
		}
		holdout := m.UtilityLists(m.JobsPostedFrom(cut))
		c := learn.Evaluate(learn.Model{Weights: weights}, learn.Model{Weights: handSet}, holdout, nil)
		t.Logf("seed %d: weights %.3f; %s", seed, weights, c.Reason)
		if !c.Promote {
			t.Errorf("seed %d: the trained model is not promoted: %s", seed, c.Reason)
		}
	}
}
