package plan

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topoedit"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

var (
	// ErrInvalidOptions reports Options that fail Validate.
	ErrInvalidOptions = errors.New("plan: invalid options")
	// ErrStats reports statistics that do not match the topology: a keyrange measured twice, measured
	// on a shard that does not own it, or not measured at all.
	ErrStats = errors.New("plan: statistics do not match the topology")
)

// Stats is what was measured for one keyrange assignment.
type Stats struct {
	KeyRange shardkey.KeyRange `json:"keyrange"`
	Shard    string            `json:"shard"`
	// Rows counts the keyrange's rows over every sharded table of its shard.
	Rows int64 `json:"rows"`
	// Bytes is the shard's table and index size apportioned to the keyrange by its share of each table's rows.
	Bytes int64 `json:"bytes"`
	// Requests counts the requests the region's nodes served for the keyrange; zero when not counted.
	Requests int64 `json:"requests"`
	// Median is a point that splits the keyrange's rows in halves (see SplitPoint), or zero when the
	// keyrange cannot be split by rows (fewer than two rows, or all on one ksid).
	Median shardkey.KeyspaceID `json:"median,omitempty"`
}

// Options are the planner's thresholds.
type Options struct {
	// Region limits the plan to one region; empty plans every region.
	Region string `json:"region,omitempty"`
	// SplitShare: a keyrange holding more than this share (0-1) of its region's rows or requests is split.
	SplitShare float64 `json:"split_share"`
	// MoveExcess: keyranges move off a shard whose weight exceeds the region's mean by more than this
	// fraction of the mean (0.2: 20% above the mean).
	MoveExcess float64 `json:"move_excess"`
	// MaxSteps bounds the steps of one plan, all regions together.
	MaxSteps int `json:"max_steps"`
}

// DefaultOptions returns the thresholds `shardmgr plan` uses unless told otherwise.
func DefaultOptions() Options {
	return Options{SplitShare: 0.6, MoveExcess: 0.2, MaxSteps: 32}
}

// Validate names the first bad field.
func (o Options) Validate() error {
	switch {
	case !(o.SplitShare > 0 && o.SplitShare <= 1):
		return fmt.Errorf("%w: SplitShare must be in (0, 1], got %v", ErrInvalidOptions, o.SplitShare)
	case !(o.MoveExcess >= 0):
		return fmt.Errorf("%w: MoveExcess must not be negative, got %v", ErrInvalidOptions, o.MoveExcess)
	case o.MaxSteps < 1:
		return fmt.Errorf("%w: MaxSteps must be at least 1, got %d", ErrInvalidOptions, o.MaxSteps)
	}
	return nil
}

// Kind is what a step does.
type Kind string

const (
	// KindSplit splits a keyrange in two on its shard (metadata only).
	KindSplit Kind = "split"
	// KindMove moves a keyrange to another shard of its region (an online move).
	KindMove Kind = "move"
)

// Step is one change of the plan, in the order it must run.
type Step struct {
	Kind   Kind   `json:"kind"`
	Region string `json:"region"`
	// KeyRange is an assignment of the topology as it stands when the step runs (after the steps before it).
	KeyRange shardkey.KeyRange `json:"keyrange"`
	// Shard owns KeyRange when the step runs.
	Shard string `json:"shard"`
	// At is a split's point; Halves the keyranges it makes.
	At     shardkey.KeyspaceID `json:"at,omitempty"`
	Halves []shardkey.KeyRange `json:"halves,omitempty"`
	// Target is a move's destination shard, in the same region.
	Target string `json:"target,omitempty"`
	// Why explains the step to the operator.
	Why string `json:"why"`
}

// Load is one shard's measure before or after the plan.
type Load struct {
	KeyRanges []string `json:"keyranges"`
	Rows      int64    `json:"rows"`
	Bytes     int64    `json:"bytes"`
	Requests  int64    `json:"requests"`
	// Share is the shard's weight: its share of the region's rows, averaged with its share of the
	// region's requests when requests were counted (0-1).
	Share float64 `json:"share"`
}

// Balance is a shard's load before and after the plan.
type Balance struct {
	Shard  string `json:"shard"`
	Region string `json:"region"`
	Before Load   `json:"before"`
	After  Load   `json:"after"`
}

// Plan is the planner's answer.
type Plan struct {
	// Version is the topology version the plan was made from.
	Version uint64  `json:"version"`
	Options Options `json:"options"`
	Steps   []Step  `json:"steps"`
	// Balance holds every shard of the planned regions, in topology order.
	Balance []Balance `json:"balance"`
	// Notes say, per region, why nothing (more) was proposed.
	Notes []string `json:"notes"`
	// After is the topology predicted after every step, valid by topology validation.
	After *topology.Topology `json:"-"`
}

// piece is a keyrange as the planner sees it while it simulates its steps.
type piece struct {
	kr                    shardkey.KeyRange
	shard                 string
	state                 topology.State
	rows, bytes, requests int64
	median                shardkey.KeyspaceID
}

// region is the planner's working state for one region.
type region struct {
	name            string
	shards          []string // topology order
	pieces          []piece  // ordered by keyrange
	totRows, totReq int64
}

const eps = 1e-9

// Make plans the rebalancing of t from stats. It fails on invalid options, an invalid topology, or
// statistics that do not cover every assignment of the planned regions exactly once.
func Make(t *topology.Topology, stats []Stats, opts Options) (*Plan, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if opts.Region != "" {
		if _, ok := t.Region(opts.Region); !ok {
			return nil, fmt.Errorf("%w: unknown region %q", ErrInvalidOptions, opts.Region)
		}
	}
	byRange, err := indexStats(t, stats, opts.Region)
	if err != nil {
		return nil, err
	}
	p := &Plan{Version: t.Version, Options: opts, Steps: []Step{}, Notes: []string{}, After: t.Clone()}
	for _, r := range t.Regions {
		if opts.Region != "" && r.Name != opts.Region {
			continue
		}
		reg := newRegion(t, r, byRange)
		before := reg.loads()
		reg.plan(p, opts)
		after := reg.loads()
		for _, s := range reg.shards {
			p.Balance = append(p.Balance, Balance{Shard: s, Region: r.Name, Before: before[s], After: after[s]})
		}
	}
	// Replaying the steps on the document proves them consistent with it (each a real assignment when
	// it runs) and the result valid: no gap, no overlap, every keyrange in its shard's region.
	for i, st := range p.Steps {
		if err := apply(p.After, st); err != nil {
			return nil, fmt.Errorf("plan: step %d (%s %s) does not apply: %w", i+1, st.Kind, st.KeyRange, err)
		}
	}
	if err := p.After.Validate(); err != nil {
		return nil, fmt.Errorf("plan: the predicted topology is invalid: %w", err)
	}
	return p, nil
}

// Apply makes step st on t, as rebalance does it: a split with topoedit.Split; a move by handing the
// keyrange to its target (what a finished move leaves behind).
func apply(t *topology.Topology, st Step) error {
	switch st.Kind {
	case KindSplit:
		_, _, err := topoedit.Split(t, st.KeyRange, st.At)
		return err
	case KindMove:
		i := slices.IndexFunc(t.KeyRanges, func(a topology.Assignment) bool { return a.Range == st.KeyRange && a.Shard == st.Shard })
		if i < 0 {
			return fmt.Errorf("%w: %s on %s", topoedit.ErrNotAnAssignment, st.KeyRange, st.Shard)
		}
		t.KeyRanges[i].Shard = st.Target
		return t.Validate()
	}
	return fmt.Errorf("unknown step kind %q", st.Kind)
}

func indexStats(t *topology.Topology, stats []Stats, only string) (map[shardkey.KeyRange]Stats, error) {
	owner := make(map[shardkey.KeyRange]string, len(t.KeyRanges))
	for _, a := range t.KeyRanges {
		owner[a.Range] = a.Shard
	}
	out := make(map[shardkey.KeyRange]Stats, len(stats))
	for _, s := range stats {
		sh, ok := owner[s.KeyRange]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: %s is not an assignment of topology version %d", ErrStats, s.KeyRange, t.Version)
		case sh != s.Shard:
			return nil, fmt.Errorf("%w: %s was measured on %s but is assigned to %s", ErrStats, s.KeyRange, s.Shard, sh)
		case s.Rows < 0 || s.Bytes < 0 || s.Requests < 0:
			return nil, fmt.Errorf("%w: %s has a negative count", ErrStats, s.KeyRange)
		}
		if _, dup := out[s.KeyRange]; dup {
			return nil, fmt.Errorf("%w: %s is measured twice", ErrStats, s.KeyRange)
		}
		out[s.KeyRange] = s
	}
	for _, a := range t.KeyRanges {
		s, _ := t.Shard(a.Shard)
		if only != "" && s.Region != only {
			continue
		}
		if _, ok := out[a.Range]; !ok {
			return nil, fmt.Errorf("%w: %s on %s was not measured", ErrStats, a.Range, a.Shard)
		}
	}
	return out, nil
}

func newRegion(t *topology.Topology, r topology.Region, stats map[shardkey.KeyRange]Stats) *region {
	reg := &region{name: r.Name}
	for _, s := range t.ShardsIn(r.Name) {
		reg.shards = append(reg.shards, s.Name)
		for _, a := range t.RangesOf(s.Name) {
			st := stats[a.Range]
			reg.pieces = append(reg.pieces, piece{kr: a.Range, shard: a.Shard, state: a.State, rows: st.Rows, bytes: st.Bytes, requests: st.Requests, median: st.Median})
			reg.totRows += st.Rows
			reg.totReq += st.Requests
		}
	}
	reg.sort()
	return reg
}

func (r *region) sort() {
	slices.SortFunc(r.pieces, func(a, b piece) int { return shardkey.CompareKeyRanges(a.kr, b.kr) })
}

func share(n, total int64) float64 {
	if total == 0 {
		return 0
	}
	return float64(n) / float64(total)
}

// weight averages the measures that were taken: rows always (when there are any), requests when counted.
func (r *region) weight(p piece) float64 {
	switch {
	case r.totReq == 0:
		return share(p.rows, r.totRows)
	case r.totRows == 0:
		return share(p.requests, r.totReq)
	}
	return (share(p.rows, r.totRows) + share(p.requests, r.totReq)) / 2
}

func (r *region) shardWeight(shard string) float64 {
	w := 0.0
	for _, p := range r.pieces {
		if p.shard == shard {
			w += r.weight(p)
		}
	}
	return w
}

func (r *region) sums(shard string) (rows, requests int64) {
	for _, p := range r.pieces {
		if p.shard == shard {
			rows += p.rows
			requests += p.requests
		}
	}
	return rows, requests
}

func (r *region) loads() map[string]Load {
	out := make(map[string]Load, len(r.shards))
	for _, s := range r.shards {
		l := Load{KeyRanges: []string{}}
		for _, p := range r.pieces {
			if p.shard == s {
				l.KeyRanges = append(l.KeyRanges, p.kr.String())
				l.Rows += p.rows
				l.Bytes += p.bytes
				l.Requests += p.requests
			}
		}
		l.Share = r.shardWeight(s)
		out[s] = l
	}
	return out
}

// measure names what the weight is made of, for the explanations.
func (r *region) measure() string {
	if r.totReq == 0 {
		return "rows"
	}
	return "load (rows and requests)"
}

// describe says what a shard holds of the region, in the terms of the weight.
func (r *region) describe(shard string) string {
	rows, req := r.sums(shard)
	if r.totReq == 0 {
		return fmt.Sprintf("%s holds %s of %s's rows", shard, pct(share(rows, r.totRows)), r.name)
	}
	return fmt.Sprintf("%s holds %s of %s's rows and %s of its requests (weight %s)", shard, pct(share(rows, r.totRows)), r.name, pct(share(req, r.totReq)), pct(r.shardWeight(shard)))
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func (r *region) plan(p *Plan, opts Options) {
	if len(r.shards) < 2 {
		p.Notes = append(p.Notes, fmt.Sprintf("%s: one shard (%s), nothing to balance with; add a shard to spread its data", r.name, strings.Join(r.shards, "")))
		return
	}
	if r.totRows == 0 && r.totReq == 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("%s: no rows and no requests measured, nothing to balance", r.name))
		return
	}
	r.splitBig(p, opts)
	r.even(p, opts)
}

// canSplit reports whether p can be split at its measured median.
func canSplit(p piece) bool {
	return p.state == topology.Serving && p.median != 0 && uint64(p.median) > p.kr.Start && p.kr.Contains(p.median)
}

// split replaces piece i with its halves at its median, the rows, bytes and requests shared by rows
// (the median halves the rows; bytes and requests are assumed to follow them). It returns the step.
func (r *region) split(i int, why string) Step {
	p := r.pieces[i]
	lo, hi, _ := p.kr.SplitAt(p.median) // canSplit checked the point
	loRows := p.rows / 2
	a := piece{kr: lo, shard: p.shard, state: topology.Serving, rows: loRows}
	b := piece{kr: hi, shard: p.shard, state: topology.Serving, rows: p.rows - loRows}
	if p.rows > 0 {
		a.bytes = p.bytes * loRows / p.rows
		a.requests = p.requests * loRows / p.rows
	}
	b.bytes, b.requests = p.bytes-a.bytes, p.requests-a.requests
	r.pieces = slices.Replace(r.pieces, i, i+1, a, b)
	return Step{Kind: KindSplit, Region: r.name, KeyRange: p.kr, Shard: p.shard, At: p.median, Halves: []shardkey.KeyRange{lo, hi}, Why: why}
}

func (r *region) splitBig(p *Plan, opts Options) {
	for i := 0; i < len(r.pieces); i++ {
		pc := r.pieces[i]
		rs, ls := share(pc.rows, r.totRows), share(pc.requests, r.totReq)
		if rs <= opts.SplitShare+eps && ls <= opts.SplitShare+eps {
			continue
		}
		what := fmt.Sprintf("%s of %s's rows", pct(rs), r.name)
		if ls > opts.SplitShare+eps {
			what = fmt.Sprintf("%s of %s's requests", pct(ls), r.name)
			if rs > opts.SplitShare+eps {
				what = fmt.Sprintf("%s of %s's rows and %s of its requests", pct(rs), r.name, pct(ls))
			}
		}
		if !canSplit(pc) {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: %s on %s holds %s (above the %s split threshold) but cannot be split: %s", r.name, pc.kr, pc.shard, what, pct(opts.SplitShare), whyNoSplit(pc)))
			continue
		}
		if len(p.Steps) >= opts.MaxSteps {
			return
		}
		p.Steps = append(p.Steps, r.split(i, fmt.Sprintf("%s holds %s, above the %s split threshold: split at its row-count median %s so its halves can be placed apart", pc.kr, what, pct(opts.SplitShare), boundHex(pc.median))))
		i++ // the upper half is a fresh piece without a median: skip it
	}
}

func whyNoSplit(p piece) string {
	if p.state != topology.Serving {
		return "it is " + string(p.state) + " (a move is working on it)"
	}
	return "no row-count median (fewer than two rows, or every row on one ksid)"
}

// extremes returns the heaviest and the lightest shard, ties broken by name.
func (r *region) extremes() (heavy, light string) {
	names := slices.Clone(r.shards)
	slices.Sort(names)
	hw, lw := -1.0, 2.0
	for _, s := range names {
		w := r.shardWeight(s)
		if w > hw+eps {
			heavy, hw = s, w
		}
		if w < lw-eps {
			light, lw = s, w
		}
	}
	if heavy == light { // every shard weighs the same
		light = names[len(names)-1]
		if light == heavy {
			light = names[0]
		}
	}
	return heavy, light
}

func (r *region) even(p *Plan, opts Options) {
	mean := 1.0 / float64(len(r.shards))
	for {
		heavy, light := r.extremes()
		wh, wl := r.shardWeight(heavy), r.shardWeight(light)
		limit := mean * (1 + opts.MoveExcess)
		if wh <= limit+eps {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: balanced: the heaviest shard, %s, is at %s of the %s, within %s of the mean %s", r.name, heavy, pct(wh), r.measure(), pct(opts.MoveExcess), pct(mean)))
			return
		}
		if len(p.Steps) >= opts.MaxSteps {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: stopped at the limit of %d steps; plan again after applying these", r.name, opts.MaxSteps))
			return
		}
		why := fmt.Sprintf("%s, %s above the mean %s (threshold +%s); %s is the emptiest (%s)",
			r.describe(heavy), pct(wh/mean-1), pct(mean), pct(opts.MoveExcess), light, pct(wl))
		// The whole keyrange whose move leaves the pair most even, if it lowers the heavier of the two.
		best, bestMax := -1, wh-eps
		for i, pc := range r.pieces {
			if pc.shard != heavy || pc.state != topology.Serving {
				continue
			}
			w := r.weight(pc)
			if m := max(wh-w, wl+w); m < bestMax-eps {
				best, bestMax = i, m
			}
		}
		if best >= 0 {
			pc := r.pieces[best]
			w := r.weight(pc)
			p.Steps = append(p.Steps, r.move(best, light, fmt.Sprintf("%s: moving %s (%s) leaves %s at %s and %s at %s", why, pc.kr, pct(w), heavy, pct(wh-w), light, pct(wl+w))))
			continue
		}
		// Else half of the biggest keyrange that can be split and whose half's move helps.
		cands := []int{}
		for i, pc := range r.pieces {
			if pc.shard == heavy && canSplit(pc) {
				cands = append(cands, i)
			}
		}
		slices.SortStableFunc(cands, func(a, b int) int { return cmp.Compare(r.weight(r.pieces[b]), r.weight(r.pieces[a])) })
		done := false
		for _, i := range cands {
			pc := r.pieces[i]
			w := r.weight(pc)
			half := w * float64(pc.rows-pc.rows/2) / float64(max(pc.rows, 1))
			if pc.rows == 0 {
				half = w / 2
			}
			if max(wh-half, wl+half) >= wh-eps {
				continue
			}
			p.Steps = append(p.Steps, r.split(i, fmt.Sprintf("%s: no whole keyrange of %s can move without leaving %s as heavy: split %s (%s) at its row-count median %s so half of it can move", why, heavy, light, pc.kr, pct(w), boundHex(pc.median))))
			if len(p.Steps) >= opts.MaxSteps {
				p.Notes = append(p.Notes, fmt.Sprintf("%s: stopped at the limit of %d steps; plan again after applying these", r.name, opts.MaxSteps))
				return
			}
			hw := r.weight(r.pieces[i+1])
			p.Steps = append(p.Steps, r.move(i+1, light, fmt.Sprintf("the upper half %s (%s) moves to %s, the emptiest: %s at %s and %s at %s", r.pieces[i+1].kr, pct(hw), light, heavy, pct(wh-hw), light, pct(wl+hw))))
			done = true
			break
		}
		if !done {
			then := "plan again with fresh measurements once this plan is applied (its halves then have medians of their own)"
			for _, pc := range r.pieces {
				if pc.shard == heavy && pc.state != topology.Serving {
					then = fmt.Sprintf("%s is %s: plan again once its move is done", pc.kr, pc.state)
					break
				}
			}
			p.Notes = append(p.Notes, fmt.Sprintf("%s: %s stays at %s of the %s (mean %s): no move of a whole keyrange, nor of half of one at its median, evens it out with %s; %s", r.name, heavy, pct(wh), r.measure(), pct(mean), light, then))
			return
		}
	}
}

func (r *region) move(i int, target, why string) Step {
	pc := r.pieces[i]
	r.pieces[i].shard = target
	return Step{Kind: KindMove, Region: r.name, KeyRange: pc.kr, Shard: pc.shard, Target: target, Why: why}
}

// boundHex writes a split point as a Vitess keyrange bound: hex, trailing zero bytes trimmed.
func boundHex(k shardkey.KeyspaceID) string {
	return strings.TrimSuffix(shardkey.KeyRange{Start: uint64(k)}.String(), "-")
}

// SplitPoint returns the split point with the shortest Vitess spelling that divides a keyrange's rows
// exactly as its median row does: a point above below (the ksid of the row just before the median row,
// or kr.Start when there is none) and at most median (the median row's ksid), keeping as few leading
// bytes of median as it can. When below and median are the same ksid (many rows on one ksid), the point
// is that ksid: its rows go to the upper half. It returns false when no point strictly inside kr exists
// (the median row on kr.Start's ksid).
func SplitPoint(kr shardkey.KeyRange, below, median shardkey.KeyspaceID) (shardkey.KeyspaceID, bool) {
	if below >= median {
		if uint64(median) > kr.Start && kr.Contains(median) {
			return median, true
		}
		return 0, false
	}
	for keep := 1; keep <= 8; keep++ {
		x := uint64(median)
		if keep < 8 {
			x &^= 1<<(64-8*keep) - 1
		}
		if x > uint64(below) && x > kr.Start && kr.Contains(shardkey.KeyspaceID(x)) {
			return shardkey.KeyspaceID(x), true
		}
	}
	return 0, false
}
