// Package synth generates a synthetic marketplace whose ground truth is known, and simulates what
// users do with the lists the matching engine shows them. It is the evaluation set of the engine (a
// ranking is graded against the hidden utility, not against another heuristic), the training data of
// the learning tests, and the demo data of the local cluster.
//
// The market: skills come in clusters (backend, frontend, data, …; some clusters are neighbours, such
// as data and machine learning), and skills of one cluster occur together. Each freelancer has a
// primary cluster and sometimes a secondary one, a country and region, an hourly rate, an
// availability, a latent quality and an observed review history; each job has a cluster, wanted
// skills, a country and region, remote or on site, an hourly budget and the time it was posted. Every
// skill has an embedding near its cluster's centre; profiles and jobs are embedded as the normalised
// sum of their skills' embeddings plus noise that stands for their free text.
//
// The hidden utility grades every (job, freelancer) pair from 0 (useless) to 4 (excellent) from
// skill overlap (with partial credit for a related skill), the freelancer's latent quality, how well
// the rate fits the budget and a small noise per pair. The engine never sees it; it sees the
// Features of a pair, the five scoring signals, which are noisy proxies of the same things (a
// review history is a noisy proxy of quality, an embedding of skill overlap).
//
// An injected bias (Options.Bias) against one group lowers what is observed of its members (their
// review histories here, and in Simulate their opens and hires) and never their utility: a model
// that learns from those outcomes inherits the bias, which is what the fairness tests must detect
// and the re-ranking repair.
//
// Everything is a function of the seed: the same seed and options give the same market, and
// Simulate with the same options gives the same outcomes. Each freelancer, job and simulated list
// draws from its own stream, so injecting a bias changes only what the bias touches.
package synth
