package fairness

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
)

// Entry is one ranked item of a list: who it is, the groups the person belongs to (attribute →
// value: "country" → "DE", "region" → "eu", a self-declared attribute → its value) and the
// relevance it was ranked by.
type Entry struct {
	ID        string            `json:"id"`
	Groups    map[string]string `json:"groups,omitempty"`
	Relevance float64           `json:"relevance"`
}

// Undeclared is the group of an entry with no value for an attribute.
const Undeclared = "undeclared"

// Group returns the entry's group for attr, Undeclared when it has none.
func (e Entry) Group(attr string) string {
	if v := e.Groups[attr]; v != "" {
		return v
	}
	return Undeclared
}

// Key names a group of an attribute in a pool that covers several attributes: "country=DE".
func Key(attr, group string) string { return attr + "=" + group }

// SplitKey is the inverse of Key (attribute names hold no "=").
func SplitKey(key string) (attr, group string, ok bool) {
	return strings.Cut(key, "=")
}

// Counts returns how many entries of list are in each group of attr.
func Counts(list []Entry, attr string) map[string]int {
	out := map[string]int{}
	for _, e := range list {
		out[e.Group(attr)]++
	}
	return out
}

// Pool counts the entries of an eligible pool per group of each attribute, keyed by Key, in the
// form Evaluate and Rows take.
func Pool(entries []Entry, attrs []string) map[string]int {
	out := map[string]int{}
	for _, attr := range attrs {
		for g, n := range Counts(entries, attr) {
			out[Key(attr, g)] += n
		}
	}
	return out
}

// PoolFor extracts one attribute's counts, keyed by group, from a pool keyed by Key; nil when the
// pool has nothing for attr.
func PoolFor(pool map[string]int, attr string) map[string]int {
	var out map[string]int
	for k, n := range pool {
		if a, g, ok := SplitKey(k); ok && a == attr {
			if out == nil {
				out = map[string]int{}
			}
			out[g] += n
		}
	}
	return out
}

// PositionWeight is the attention given to rank r (from 1): 1/log2(1+r).
func PositionWeight(rank int) float64 {
	return 1 / math.Log2(1+float64(rank))
}

// exposureWeights sums the position weights of each group of attr.
func exposureWeights(list []Entry, attr string) (map[string]float64, float64) {
	out := map[string]float64{}
	var total float64
	for i, e := range list {
		w := PositionWeight(i + 1)
		out[e.Group(attr)] += w
		total += w
	}
	return out, total
}

// Exposure returns each group's share of the list's position weights 1/log2(1+rank), rank from 1;
// the shares sum to 1. An empty list gives an empty map.
func Exposure(list []Entry, attr string) map[string]float64 {
	out, total := exposureWeights(list, attr)
	for g := range out {
		out[g] /= total
	}
	return out
}

// Config holds the thresholds of the bias checks. A zero field takes its default.
type Config struct {
	// Threshold is the impact ratio below which a group is flagged: 0.8, the four-fifths rule.
	Threshold float64
	// MinPool is the smallest pool a group needs to be flagged, or to be the reference rate: 10.
	MinPool int
	// Smoothing is the α added to every group's count in skew@k: 1.
	Smoothing float64
}

// The defaults of Config.
const (
	DefaultThreshold = 0.8
	DefaultMinPool   = 10
	DefaultSmoothing = 1.0
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Threshold: DefaultThreshold, MinPool: DefaultMinPool, Smoothing: DefaultSmoothing}
}

// ErrConfig is returned by Validate.
var ErrConfig = errors.New("fairness: bad config")

// Validate refuses thresholds that cannot mean anything (zero fields are fine: they take defaults).
func (c Config) Validate() error {
	switch {
	case math.IsNaN(c.Threshold) || c.Threshold < 0 || c.Threshold > 1:
		return fmt.Errorf("%w: Threshold %v is not in (0, 1]", ErrConfig, c.Threshold)
	case c.MinPool < 0:
		return fmt.Errorf("%w: MinPool %d is negative", ErrConfig, c.MinPool)
	case math.IsNaN(c.Smoothing) || math.IsInf(c.Smoothing, 0) || c.Smoothing < 0:
		return fmt.Errorf("%w: Smoothing %v is not a positive number", ErrConfig, c.Smoothing)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if !(c.Threshold > 0) || c.Threshold > 1 {
		c.Threshold = DefaultThreshold
	}
	if c.MinPool <= 0 {
		c.MinPool = DefaultMinPool
	}
	if !(c.Smoothing > 0) || math.IsInf(c.Smoothing, 0) {
		c.Smoothing = DefaultSmoothing
	}
	return c
}

// ImpactRatio applies DefaultConfig's ImpactRatio.
func ImpactRatio(selected, pool map[string]int) (map[string]float64, []string) {
	return DefaultConfig().ImpactRatio(selected, pool)
}

// ImpactRatio returns each group's selection rate (selected_g/pool_g) over the reference rate, and
// the groups flagged by the four-fifths rule, sorted (see the package doc for the reference rate,
// the minimum pool and rounding). Negative counts count as 0; a group with neither a pool nor a
// selection is left out.
func (c Config) ImpactRatio(selected, pool map[string]int) (map[string]float64, []string) {
	c = c.withDefaults()
	n := map[string]int{}
	s := map[string]int{}
	for g, v := range pool {
		if v > 0 {
			n[g] = v
		}
	}
	for g, v := range selected {
		if v > 0 {
			s[g] = v
			n[g] = max(n[g], v)
		}
	}
	var S, N int
	for g := range n {
		S += s[g]
		N += n[g]
	}
	ratios := make(map[string]float64, len(n))
	flagged := []string{}
	if S == 0 {
		for g := range n {
			ratios[g] = 1
		}
		return ratios, flagged
	}
	rate := func(g string) float64 { return float64(s[g]) / float64(n[g]) }
	var ref, refAll float64
	for g := range n {
		refAll = max(refAll, rate(g))
		if n[g] >= c.MinPool {
			ref = max(ref, rate(g))
		}
	}
	judged := ref > 0
	if !judged {
		ref = refAll // no group is large enough to flag; the ratios are still worth reporting
	}
	for g := range n {
		ratios[g] = rate(g) / ref
		fair := mulDiv(S, n[g], N) // floor(S·pool_g/N): the whole people a list could have given g
		if judged && n[g] >= c.MinPool && ratios[g] < c.Threshold && s[g] < fair {
			flagged = append(flagged, g)
		}
	}
	sort.Strings(flagged)
	return ratios, flagged
}

// SkewAtK applies DefaultConfig's SkewAtK.
func SkewAtK(list []Entry, attr string, pool map[string]int, k int) map[string]float64 {
	return DefaultConfig().SkewAtK(list, attr, pool, k)
}

// SkewAtK returns, per group of attr seen in the pool or in the top k of list, the smoothed
// ln(share in the top k / share in the pool) (see the package doc). k ≤ 0 or beyond the list means
// the whole list; a nil pool means the list is the pool.
func (c Config) SkewAtK(list []Entry, attr string, pool map[string]int, k int) map[string]float64 {
	c = c.withDefaults()
	if pool == nil {
		pool = Counts(list, attr)
	}
	top := list[:clampK(k, len(list))]
	return skew(Counts(top, attr), pool, c.Smoothing)
}

func skew(shown, pool map[string]int, alpha float64) map[string]float64 {
	groups := map[string]bool{}
	var K, N float64
	for g, v := range shown {
		groups[g] = true
		K += float64(max(v, 0))
	}
	for g, v := range pool {
		groups[g] = true
		N += float64(max(v, 0))
	}
	G := float64(len(groups))
	out := make(map[string]float64, len(groups))
	for g := range groups {
		listShare := (float64(max(shown[g], 0)) + alpha) / (K + alpha*G)
		poolShare := (float64(max(pool[g], 0)) + alpha) / (N + alpha*G)
		out[g] = math.Log(listShare / poolShare)
	}
	return out
}

// mulDiv is floor(a·b/c) for 0 ≤ a, 0 ≤ b ≤ c, c > 0, exact even where a·b overflows: a region's
// day sums pools over every list served.
func mulDiv(a, b, c int) int {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, _ := bits.Div64(hi, lo, uint64(c)) // q ≤ a since b ≤ c: no overflow
	return int(q)
}

func clampK(k, n int) int {
	if k <= 0 || k > n {
		return n
	}
	return k
}

// Report is the fairness of one served list, the `fairness` field of a matching response. Every
// map is keyed by attribute, then by group; every group of the pool appears, shown or not.
type Report struct {
	// K is how many entries of the list were judged (its top k).
	K int `json:"k"`
	// Groups counts the entries of each group in the top k.
	Groups map[string]map[string]int `json:"groups"`
	// Exposure is each group's share of the top k's position weights; the shares of an attribute
	// sum to 1.
	Exposure map[string]map[string]float64 `json:"exposure"`
	// ImpactRatio is each group's selection rate over the reference rate.
	ImpactRatio map[string]map[string]float64 `json:"impact_ratio"`
	// Skew is skew@k against the pool.
	Skew map[string]map[string]float64 `json:"skew_at_k"`
	// Flagged lists the groups the four-fifths rule flags, as Key(attribute, group), sorted.
	Flagged []string `json:"flagged"`
	// Reranked says the list was re-ranked for fairness, at RelevanceCost (1 − DCG ratio).
	Reranked      bool    `json:"reranked"`
	RelevanceCost float64 `json:"relevance_cost"`
}

// Evaluate applies DefaultConfig's Evaluate.
func Evaluate(list []Entry, pool map[string]int, attrs []string, k int) Report {
	return DefaultConfig().Evaluate(list, pool, attrs, k)
}

// Evaluate reports the fairness of the top k of list (k ≤ 0 or beyond the list: all of it) for each
// attribute of attrs against pool, keyed by Key (see the package doc for a nil pool). It sets
// neither Reranked nor RelevanceCost; EvaluateRerank does.
func (c Config) Evaluate(list []Entry, pool map[string]int, attrs []string, k int) Report {
	c = c.withDefaults()
	k = clampK(k, len(list))
	top := list[:k]
	r := Report{K: k, Groups: map[string]map[string]int{}, Exposure: map[string]map[string]float64{},
		ImpactRatio: map[string]map[string]float64{}, Skew: map[string]map[string]float64{}, Flagged: []string{}}
	for _, attr := range attrs {
		p := poolOf(list, pool, attr)
		shown := Counts(top, attr)
		exposure := Exposure(top, attr)
		for g := range p {
			if _, ok := shown[g]; !ok {
				shown[g] = 0
			}
			if _, ok := exposure[g]; !ok {
				exposure[g] = 0
			}
		}
		ratios, flagged := c.ImpactRatio(shown, p)
		r.Groups[attr] = shown
		r.Exposure[attr] = exposure
		r.ImpactRatio[attr] = ratios
		r.Skew[attr] = skew(shown, p, c.Smoothing)
		for _, g := range flagged {
			r.Flagged = append(r.Flagged, Key(attr, g))
		}
	}
	slices.Sort(r.Flagged)
	r.Flagged = slices.Compact(r.Flagged)
	return r
}

// poolOf is attr's part of a pool keyed by Key, or the list's own counts when the pool has none.
func poolOf(list []Entry, pool map[string]int, attr string) map[string]int {
	if p := PoolFor(pool, attr); p != nil {
		return p
	}
	return Counts(list, attr)
}

// EvaluateRerank re-ranks list for attr (Rerank, with attr's part of pool) and evaluates the result
// as Evaluate does, with Reranked set and the relevance it cost.
func (c Config) EvaluateRerank(list []Entry, pool map[string]int, attrs []string, attr string, k int) ([]Entry, Report) {
	out, cost := Rerank(list, attr, poolOf(list, pool, attr), k)
	r := c.Evaluate(out, pool, attrs, k) // a permutation: a nil pool counts the same population
	r.Reranked = true
	r.RelevanceCost = cost
	return out, r
}
