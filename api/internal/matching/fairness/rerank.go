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
	// owedBy is how many more entries g needs by prefix length t: its floor there, capped by the
	// entries it has, less those placed. It never falls as t grows.
	owedBy := func(g, t int) int { return max(0, min(floor(g, t), len(queues[g]))-head[g]) }
	before := func(a, b int) bool { // a's next entry ranks before b's
		ia, ib := queues[a][head[a]], queues[b][head[b]]
		if c := byRelevance(list[ia], list[ib]); c != 0 {
			return c < 0
		}
		return ia < ib
	}

	out := make([]Entry, 0, n)
	placed := make([]bool, n)
	for j := 1; j <= k; j++ {
		// With j−1 positions filled, what is owed by each length t fits in the t−(j−1) positions
		// up to it (true at the start, since the floors of one length sum to at most the length,
		// and kept below). Where it fills them exactly, position j must serve a group owed an entry
		// there; as owedBy never falls, serving one owed by the earliest such t serves every later
		// one too, and every other t has a position to spare. So: the most relevant entry of any
		// group owed by that t, or of any group at all when no t is tight.
		tight := 0
		for t := j; t <= k && tight == 0; t++ {
			var due int
			for g := range queues {
				due += owedBy(g, t)
			}
			if due >= t-(j-1) {
				tight = t
			}
		}
		pick := -1
		for g, q := range queues {
			if head[g] == len(q) || tight > 0 && owedBy(g, tight) == 0 {
				continue
			}
			if pick < 0 || before(g, pick) {
				pick = g
			}
		}
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
