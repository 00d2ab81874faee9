// Package score ranks a pair of a job and a freelancer: the hard filters that decide whether the
// pair may be shown at all (Eligible), five signals in [0,1] that say how well it fits (Compute),
// and their weighted sum with one reason per signal (Score). It does no I/O; the matching service
// gathers the facts, the index supplies the cosine, and the trained model supplies the weights.
//
// # Hard filters
//
// Eligible refuses a pair, before anything is scored, when:
//   - the job is not open (ReasonJobNotOpen);
//   - the freelancer is not available (ReasonFreelancerUnavailable);
//   - the job is on site (not remote), both countries are known and they differ
//     (ReasonOnsiteElsewhere); an unknown country is not held against anyone;
//   - the freelancer's hourly rate is more than twice the job's budget_max, when both are known and
//     in the same currency (ReasonOverBudget); the price-fit signal is already 0 at twice the budget.
//
// # Signals
//
// Every signal is a number in [0,1]; 0.5 means "not known" wherever a fact can be missing.
//
//   - similarity: the cosine c of the job's and the profile's embeddings, clamped to [0,1]
//     (max(0, c)). Embeddings of unrelated texts sit near 0 and anti-similar texts are no better
//     match than unrelated ones, so negative cosines count as 0; mapping (c+1)/2 instead would
//     squeeze every real pair into [0.5,1] and make the signal's share of the score unreadable.
//   - skill_coverage: the weighted share of the job's skills that the freelancer has,
//     Σ w(s) over the job's skills the freelancer has ÷ Σ w(s) over all the job's skills. Skills
//     are compared after skills.Fold, so "Go" and " go " are one skill. The weights are IDF-like,
//     given by the caller (rarer skills weigh more); a skill without a positive finite weight
//     weighs 1. A job that lists no skills gives 0.5.
//   - rating: a Bayesian average of the verified reviews of the party being recommended (the
//     freelancer in a list of freelancers for a job, the job's client in a list of jobs for a
//     freelancer): r = (C·m + n·avg) / (C + n) with the prior mean m = 3.5 and the prior weight
//     C = 5 reviews, mapped from the 1–5 scale to (r−1)/4. Nobody reviewed yet gets the prior,
//     0.625; a few excellent reviews move it less than many.
//   - price_fit: 1 when the hourly rate is at most the job's budget_max (a rate below budget_min
//     is within what the client will pay, so it fits too), falling linearly to 0 at twice
//     budget_max: 2 − rate/budget_max. A job with no upper bound to its budget takes any rate: 1.
//     An unknown rate, or one in another currency than the budget, gives 0.5.
//   - availability: 1 when the freelancer is available and the job is open, 0 otherwise. The hard
//     filters refuse both cases, so among eligible pairs it is 1; it is kept so that a model can
//     be trained and evaluated on lists that were not filtered.
//
// # Score and reasons
//
// Score is Σ wᵢ·sᵢ over the five signals in the order of Names. Each Reason carries one signal's
// contribution wᵢ·sᵢ and a human sentence ("covers 3 of 4 skills: go, sql, k8s"), and the score is
// computed as the sum of the contributions in that order, so adding up the reasons in the order
// given reproduces the score bit for bit. With the Default weights (which sum to 1) and signals in
// [0,1] the score is in [0,1]; trained weights need not sum to 1.
package score
