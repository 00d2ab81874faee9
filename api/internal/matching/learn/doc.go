// Package learn fits the matching engine's scoring weights from what happened after a list was shown,
// and decides whether a newly fitted model may replace the one that serves.
//
// An Example is one item of one shown list: its position, the scoring signals it had when it was
// shown (in the order of FeatureNames, the order of the score package's weight vector), how far it
// got (Label: shown, opened, applied, hired, completed and rated well) and the propensity with which
// its position was looked at at all. Train fits a linear ranker with a pairwise logistic loss inside
// each list (RankNet's loss with a linear scorer): an item that got further than another should score
// above it. What a user never looked at tells nothing about whether it is good, and the top of a list
// is looked at far more than its bottom, so a model trained on raw outcomes learns mostly to repeat
// the ranking that produced them. Each pair is therefore weighted by the inverse of the propensity of
// its preferred item (Joachims, Swaminathan and Schnabel 2017, "Unbiased learning-to-rank with biased
// feedback"), clipped so that one lucky click at position 40 cannot dominate the fit.
//
// Everything is deterministic: lists are ordered by time and ID, pairs in a fixed order, and the only
// randomness (pair sampling and mini-batch order, both optional) comes from TrainOptions.Seed.
//
// NDCG measures a weight vector on lists whose labels grade the items (observed outcomes, or in
// evaluation on synthetic data the hidden utility); SplitByTime keeps the newest lists apart as a
// holdout, so a model is always judged on lists it could not have seen; Evaluate compares a candidate
// with the serving model on that holdout and promotes it only when it ranks better and passes the
// fairness gate the caller supplies.
//
// The package does no I/O: the service reads outcomes from the shards, builds Examples, and stores
// each Model with its figures.
package learn
