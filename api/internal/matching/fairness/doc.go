// Package fairness measures how a ranked list of matches spreads its attention over groups of
// people, flags lists (and regions' days) where a group is left out, and can re-rank a list so that
// its top K holds the eligible pool's proportions at the smallest loss of relevance. It does no I/O:
// the matching service passes the lists it served and the pool they were drawn from, and stores the
// figures.
//
// # Groups
//
// An Entry carries, per attribute, the group a person belongs to: "country" → "DE", "region" →
// "eu", or a self-declared attribute the profile carries. Groups are never inferred: an entry with
// no value for an attribute is in the group Undeclared for it, which is counted like any other. A
// pool is the number of eligible candidates per group, the population the list was chosen from; in
// the functions about one attribute it is keyed by the group ("DE"), in Evaluate and Rows, which
// look at several attributes at once, by Key(attribute, group) ("country=DE"). A nil pool, or one
// with nothing for an attribute, means the list given is itself the pool, and its first k entries
// are what was shown.
//
// # Exposure
//
// The attention a list gives to rank r (from 1) is the position weight 1/log2(1+r), the discount of
// DCG: 1 for the first, 0.63 for the second, 0.5 for the third, 0.29 for the tenth. A group's
// exposure is the sum of the weights of its ranks, as a share of the list's total, so the shares of
// one attribute sum to 1.
//
// # Impact ratio (the four-fifths rule)
//
// A group's selection rate is selected_g / pool_g: for one list, how many of the group are in the
// top k out of how many were eligible; over a region's day, the same sums over every list served.
// Its impact ratio is its rate divided by the highest rate of any group whose pool has at least
// MinPool people (so that a group of two, both shown, does not become the yardstick). A group is
// flagged when all of these hold:
//   - its impact ratio is below Threshold, 0.8 by default (the four-fifths rule of the US EEOC's
//     Uniform Guidelines);
//   - its pool has at least MinPool people (10 by default): a smaller group's ratio is reported but
//     says too little to flag;
//   - it holds fewer than floor(S·pool_g/N) of the S selected out of the N in the pool, the share a
//     list could have given it in whole people. In a top 10 drawn from a pool that is 15% one
//     group, that group's fair count is 1.5: one is as close as a list can come, yet gives it a
//     ratio near 0.6. Such a shortfall is rounding, not bias, and is not flagged. Once the group
//     could expect 5 or more of the selected the condition follows from the ratio, so in aggregates
//     it is the plain four-fifths rule.
//
// A group selected but missing from the pool counts as a pool of as many as were selected. When
// nobody was selected at all every ratio is 1 and nothing is flagged.
//
// # Skew@k
//
// The skew of a group in the top k is ln(list share / pool share), with both shares smoothed by
// Smoothing α (1 by default, Laplace) over the G groups seen in either: list share (c_g + α) /
// (k + α·G), pool share (n_g + α) / (N + α·G). It is about 0 for a group shown in proportion
// (exactly 0 when the smoothing does not tip it), negative for one shown less (about ln 0.5 ≈
// −0.69 for half its share) and positive for one shown more; the smoothing keeps it finite for a
// group with nobody shown.
//
// # Re-ranking
//
// Rerank works in the manner of DetConstSort (Geyik, Ambler and Kenthapadi, "Fairness-Aware Ranking
// in Search & Recommendation Systems with Application to LinkedIn Talent Search", KDD 2019). Each
// group g of the pool, with the share p_g = pool_g/N, is owed at least floor(p_g·j) of every prefix
// of length j ≤ k of the output; its i-th entry therefore has a deadline, the first prefix length at
// which floor(p_g·j) reaches i, and a group's entries are placed in its own order of relevance.
// DetConstSort inserts the entry each rising minimum demands and lets it climb above less relevant
// entries as long as no entry is pushed past its deadline. This implementation reaches the same kind
// of order from the other end, position by position. Before position j, it looks at every prefix
// length t from j to k: the entries the groups still owe by t must fit in the t − j + 1 positions
// left up to t. Where they fill them exactly, t is tight, and position j goes to the most relevant
// next entry of a group that owes one by the earliest tight t (which serves every later tight t as
// well, since what a group owes never falls as t grows); when no t is tight, to the most relevant
// remaining entry of any group. Unlike DetConstSort, which fills the top k only with the entries
// the minimums demand (so each group gets exactly its floor), the slots no minimum claims go to the
// most relevant entries of any group: every floor is still met and less relevance is lost. A group
// with fewer entries in the list than it is owed gets all it has, and the others fill its slots.
// Entries after the top k follow in order of relevance, so the output is a permutation of the
// input. The tests compare it with every permutation of small lists: none that meets the same
// floors has a higher DCG@k. It costs O(k²·G) for G groups.
//
// The relevance cost is 1 − DCG@k(output)/DCG@k(input), with DCG@k = Σ_{r≤k} relevance_r/log2(1+r):
// 0 when re-ranking changed nothing, and the fraction of the list's discounted relevance given up
// otherwise. For an input in descending relevance it is never negative.
//
// # Aggregates
//
// Rows turns one served list into its contribution to a region's day (per attribute and group: the
// summed position weights, the number selected, the pool), Sum adds up rows of the same region, day,
// attribute and group, and Aggregate computes exposure shares, impact ratios, skew and flags from
// the sums. Summing rows rather than averaging reports weighs every list by what it showed.
package fairness
