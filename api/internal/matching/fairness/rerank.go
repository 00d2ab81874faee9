package fairness

import (
	"cmp"
	"math"
	"slices"
)

// Rerank reorders list so that every prefix of length j ≤ k holds at least floor(p_g·j) entries of
// each group g of attr, p_g being g's share of pool (keyed by group; nil: the list's own counts),
// losing as little relevance as it can (see the package doc for the algorithm). k ≤ 0 or beyond the
// list means the whole list. The output is a permutation of list, which is left untouched; the
// relevance cost is 1 − DCG@k(output)/DCG@k(list). Entries are ranked by Relevance, ties in list
// order, a NaN relevance below every number.
func Rerank(list []Entry, attr string, pool map[string]int, k int) ([]Entry, float64) {
	n := len(list)
	k = clampK(k, n)
	if pool == nil {
		pool = Counts(list, attr)
	}

	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return byRelevance(list[a], list[b]) })

	// One queue per group of the list, each in order of relevance; owed[g] is g's pool count.
	slot := map[string]int{}
	var queues [][]int
	var owed []int
	for _, i := range order {
		g := list[i].Group(attr)
		s, ok := slot[g]
		if !ok {
			s = len(queues)
			slot[g] = s
			queues = append(queues, nil)
			owed = append(owed, max(pool[g], 0))
		}
		queues[s] = append(queues[s], i)
	}
	var total int
	for _, v := range pool {
		total += max(v, 0) // groups absent from the list still take their share of the pool
	}
	floor := func(g, j int) int { // floor(p_g·j), exactly
		if total == 0 {
			return 0
		}
		return mulDiv(j, owed[g], total)
	}

	head := make([]int, len(queues)) // entries of each group placed so far
	// reachable says whether, with filled positions taken, every group can still meet its floor
	// at every prefix length up to k: the entries still owed by length t (capped by what the group
	// has left) must fit in the t − filled positions before it.
	reachable := func(filled int) bool {
		for t := filled; t <= k; t++ {
			var due int
			for g, q := range queues {
				if d := min(floor(g, t), len(q)) - head[g]; d > 0 {
					due += d
				}
			}
			if due > t-filled {
				return false
			}
		}
		return true
	}

	out := make([]Entry, 0, n)
	placed := make([]bool, n)
	cands := make([]int, 0, len(queues))
	for j := 1; j <= k; j++ {
		cands = cands[:0]
		for g, q := range queues {
			if head[g] < len(q) {
				cands = append(cands, g)
			}
		}
		slices.SortFunc(cands, func(a, b int) int {
			ia, ib := queues[a][head[a]], queues[b][head[b]]
			if c := byRelevance(list[ia], list[ib]); c != 0 {
				return c
			}
			return cmp.Compare(ia, ib)
		})
		pick := cands[0] // the most relevant entry left, unless a deadline needs another
		for _, g := range cands {
			head[g]++
			ok := reachable(j)
			head[g]--
			if ok {
				pick = g
				break
			}
		}
		// Some candidate always keeps the floors reachable: the group owed an entry at the earliest
		// prefix length where the remaining positions are exactly spoken for (package doc).
		i := queues[pick][head[pick]]
		head[pick]++
		placed[i] = true
		out = append(out, list[i])
	}
	for _, i := range order {
		if !placed[i] {
			out = append(out, list[i])
		}
	}
	return out, relevanceCost(list, out, k)
}

// byRelevance orders entries by descending relevance, NaN last.
func byRelevance(a, b Entry) int {
	an, bn := math.IsNaN(a.Relevance), math.IsNaN(b.Relevance)
	switch {
	case an || bn:
		return cmp.Compare(btoi(an), btoi(bn))
	}
	return cmp.Compare(b.Relevance, a.Relevance)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// DCG is Σ relevance_r / log2(1+r) over the first k entries (k ≤ 0 or beyond the list: all);
// NaN relevances count as 0.
func DCG(list []Entry, k int) float64 {
	var sum float64
	for i, e := range list[:clampK(k, len(list))] {
		if !math.IsNaN(e.Relevance) {
			sum += e.Relevance * PositionWeight(i+1)
		}
	}
	return sum
}

// relevanceCost is 1 − DCG@k(after)/DCG@k(before), written (before − after)/|before| so that it
// keeps its sign for negative relevances; 0 when before has no discounted relevance.
func relevanceCost(before, after []Entry, k int) float64 {
	b, a := DCG(before, k), DCG(after, k)
	if b == 0 || b == a {
		return 0
	}
	return (b - a) / math.Abs(b)
}
