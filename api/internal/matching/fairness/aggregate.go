package fairness

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Row is the figures of one group of one attribute for a region and a day: the summed position
// weights it got, how many times it was selected (in a top k) and how many times it was in the
// eligible pool. Rows sum: the rows of one list, of many lists and of many days add up.
type Row struct {
	Region   string  `json:"region"`
	Day      string  `json:"day"`
	Attr     string  `json:"attribute"`
	Group    string  `json:"group"`
	Exposure float64 `json:"exposure"`
	Selected int     `json:"selected"`
	Pool     int     `json:"pool"`
}

// Day is the UTC calendar day of t, the Day of its rows: "2026-12-01".
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// Rows returns one served list's rows for region on the day of at: per attribute of attrs and per
// group seen in the pool (keyed by Key; nil or nothing for an attribute: the list) or in the top k,
// the summed position weights and the count in the top k, and the group's pool. Sorted by attribute
// and group.
func Rows(region string, at time.Time, list []Entry, pool map[string]int, attrs []string, k int) []Row {
	day := Day(at)
	top := list[:clampK(k, len(list))]
	var out []Row
	for _, attr := range slices.Compact(slices.Sorted(slices.Values(attrs))) {
		p := poolOf(list, pool, attr)
		weights, _ := exposureWeights(top, attr)
		shown := Counts(top, attr)
		groups := map[string]bool{}
		for g := range p {
			groups[g] = true
		}
		for g := range shown {
			groups[g] = true
		}
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			out = append(out, Row{Region: region, Day: day, Attr: attr, Group: g,
				Exposure: weights[g], Selected: shown[g], Pool: max(p[g], 0)})
		}
	}
	return out
}

type rowKey struct{ region, day, attr, group string }

// Sum adds up the rows of the same region, day, attribute and group, sorted by those. To sum a
// period, blank the rows' Day first.
func Sum(rows []Row) []Row {
	at := map[rowKey]int{}
	var out []Row
	for _, r := range rows {
		key := rowKey{r.Region, r.Day, r.Attr, r.Group}
		i, ok := at[key]
		if !ok {
			at[key] = len(out)
			out = append(out, Row{Region: r.Region, Day: r.Day, Attr: r.Attr, Group: r.Group})
			i = len(out) - 1
		}
		out[i].Exposure += r.Exposure
		out[i].Selected += r.Selected
		out[i].Pool += r.Pool
	}
	slices.SortFunc(out, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Day, b.Day),
			cmp.Compare(a.Attr, b.Attr), cmp.Compare(a.Group, b.Group))
	})
	return out
}

// Summary is the fairness of a region over a day (or a period, Day ""), from summed rows. Maps are
// keyed by attribute, then group.
type Summary struct {
	Region string `json:"region"`
	Day    string `json:"day,omitempty"`
	// Groups counts how many times each group was selected; Pool how many times it was eligible.
	Groups      map[string]map[string]int     `json:"groups"`
	Pool        map[string]map[string]int     `json:"pool"`
	Exposure    map[string]map[string]float64 `json:"exposure"`
	ImpactRatio map[string]map[string]float64 `json:"impact_ratio"`
	Skew        map[string]map[string]float64 `json:"skew"`
	// Flagged lists the groups the four-fifths rule flags, as Key(attribute, group), sorted.
	Flagged []string `json:"flagged"`
}

// Aggregate applies DefaultConfig's Aggregate.
func Aggregate(rows []Row) []Summary { return DefaultConfig().Aggregate(rows) }

// Aggregate sums rows (Sum) and returns one Summary per region and day, sorted: exposure as shares
// of each attribute's summed weights, impact ratios and flags over the summed selections and pools,
// and the skew of the selections against the pools.
func (c Config) Aggregate(rows []Row) []Summary {
	c = c.withDefaults()
	var out []Summary
	var cur *Summary
	for _, r := range Sum(rows) {
		if cur == nil || cur.Region != r.Region || cur.Day != r.Day {
			out = append(out, Summary{Region: r.Region, Day: r.Day, Groups: map[string]map[string]int{},
				Pool: map[string]map[string]int{}, Exposure: map[string]map[string]float64{},
				ImpactRatio: map[string]map[string]float64{}, Skew: map[string]map[string]float64{}, Flagged: []string{}})
			cur = &out[len(out)-1]
		}
		if cur.Groups[r.Attr] == nil {
			cur.Groups[r.Attr] = map[string]int{}
			cur.Pool[r.Attr] = map[string]int{}
			cur.Exposure[r.Attr] = map[string]float64{}
		}
		cur.Groups[r.Attr][r.Group] = r.Selected
		cur.Pool[r.Attr][r.Group] = r.Pool
		cur.Exposure[r.Attr][r.Group] = r.Exposure
	}
	for i := range out {
		s := &out[i]
		for attr, exp := range s.Exposure {
			var total float64
			for _, w := range exp {
				total += w
			}
			if total > 0 {
				for g := range exp {
					exp[g] /= total
				}
			}
			ratios, flagged := c.ImpactRatio(s.Groups[attr], s.Pool[attr])
			s.ImpactRatio[attr] = ratios
			s.Skew[attr] = skew(s.Groups[attr], s.Pool[attr], c.Smoothing)
			for _, g := range flagged {
				s.Flagged = append(s.Flagged, Key(attr, g))
			}
		}
		slices.Sort(s.Flagged)
	}
	return out
}
