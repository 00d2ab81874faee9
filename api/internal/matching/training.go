package matching

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/matching/fairness"
	"github.com/8thdegree/meridian/api/internal/matching/learn"
	"github.com/8thdegree/meridian/api/internal/matching/score"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Trainer trains, evaluates, promotes and rolls back the ranking models of one region, from the lists
// served in the region and what followed them: opened and dismissed items (ai.match_events) and the
// hiring outcomes (ai.outcomes). It reads only the region's shards: outcomes recorded in another
// region stay there.
type Trainer struct {
	pools  *shardpool.Manager
	region string
	anchor shardkey.KeyspaceID
	// Eta is the position-bias exponent of the examination model P(examined | position) = 1/position^Eta.
	Eta float64
	// Holdout is the share of the newest lists kept out of training, to evaluate on.
	Holdout float64
	// Since bounds how old a list may be to be learned from.
	Since time.Time
	Now   func() time.Time
}

// NewTrainer returns the trainer of region on pools (which follow the topology tab).
func NewTrainer(pools *shardpool.Manager, tab *topology.Table, region string) (*Trainer, error) {
	r, ok := tab.Topology().Region(region)
	if !ok {
		return nil, fmt.Errorf("matching: no region %q in the topology", region)
	}
	return &Trainer{pools: pools, region: region, anchor: anchor(r.Code), Eta: 1, Holdout: 0.2, Now: time.Now}, nil
}

type pair struct{ job, freelancer shardkey.ID }

// Examples reads the region's served lists as learning examples: one per item shown, with its
// signals, its position, the examination propensity of that position, and its label — the best that
// followed: opened 1, applied 2, hired 3, completed 4 (3 when the review that followed was below
// learn.GoodRating); dismissed or nothing 0.
func (t *Trainer) Examples(ctx context.Context) ([]learn.Example, map[string]map[string]string, error) {
	tab := t.pools.Table()
	if tab == nil {
		return nil, nil, errors.New("matching: no topology")
	}
	bounds := shardpool.OwnedBounds(tab)
	labels := map[pair]int{}
	poor := map[pair]bool{}
	type list struct {
		id, direction string
		at            time.Time
		subject       shardkey.ID
		items         []struct {
			ID       shardkey.ID       `json:"id"`
			Position int               `json:"position"`
			Signals  []float64         `json:"signals"`
			Groups   map[string]string `json:"groups"`
		}
	}
	var lists []list
	events := map[string]map[shardkey.ID]string{}
	for _, tg := range t.pools.Targets(t.region) {
		b, ok := bounds[tg.Shard]
		if !ok {
			continue
		}
		rows, err := tg.Pool.Query(ctx, outcomesSQL, b.Lo, b.Hi)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var (
				kind        string
				job, fr     []byte
				details     map[string]any
				jobID, frID shardkey.ID
			)
			if err := rows.Scan(&kind, &job, &fr, &details); err != nil {
				rows.Close()
				return nil, nil, err
			}
			if jobID, err = shardkey.IDFromBytes(job); err != nil {
				continue
			}
			if frID, err = shardkey.IDFromBytes(fr); err != nil {
				continue
			}
			p := pair{jobID, frID}
			lvl := map[string]int{"proposal_created": learn.LabelApplied, "contract_started": learn.LabelHired,
				"contract_completed": learn.LabelCompleted}[kind]
			if kind == "review_posted" {
				if r, ok := details["rating"].(float64); ok && r < learn.GoodRating {
					poor[p] = true
				}
			}
			labels[p] = max(labels[p], lvl)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
		lrows, err := tg.Pool.Query(ctx, trainingListsSQL, t.region, t.Since, b.Lo, b.Hi)
		if err != nil {
			return nil, nil, err
		}
		for lrows.Next() {
			var (
				l       list
				subject []byte
				raw     []byte
			)
			if err := lrows.Scan(&l.id, &l.at, &l.direction, &subject, &raw); err != nil {
				lrows.Close()
				return nil, nil, err
			}
			if l.subject, err = shardkey.IDFromBytes(subject); err != nil || json.Unmarshal(raw, &l.items) != nil {
				continue
			}
			lists = append(lists, l)
		}
		lrows.Close()
		if err := lrows.Err(); err != nil {
			return nil, nil, err
		}
		erows, err := tg.Pool.Query(ctx, trainingEventsSQL, t.Since, b.Lo, b.Hi)
		if err != nil {
			return nil, nil, err
		}
		for erows.Next() {
			var (
				listID, typ string
				item        []byte
			)
			if err := erows.Scan(&listID, &item, &typ); err != nil {
				erows.Close()
				return nil, nil, err
			}
			id, err := shardkey.IDFromBytes(item)
			if err != nil {
				continue
			}
			if events[listID] == nil {
				events[listID] = map[shardkey.ID]string{}
			}
			if events[listID][id] != "opened" {
				events[listID][id] = typ
			}
		}
		erows.Close()
		if err := erows.Err(); err != nil {
			return nil, nil, err
		}
	}
	var out []learn.Example
	groups := map[string]map[string]string{}
	for _, l := range lists {
		for _, it := range l.items {
			if len(it.Signals) != learn.NumFeatures || it.Position < 1 {
				continue
			}
			p := pair{job: l.subject, freelancer: it.ID}
			if l.direction == dirJobs {
				p = pair{job: it.ID, freelancer: l.subject}
			}
			label := labels[p]
			if label == learn.LabelCompleted && poor[p] {
				label = learn.LabelHired
			}
			if events[l.id][it.ID] == "opened" {
				label = max(label, learn.LabelOpened)
			}
			out = append(out, learn.Example{ListID: l.id, ItemID: it.ID.String(), At: l.at, Position: it.Position,
				Features: it.Signals, Label: label, Propensity: learn.ExaminationPropensity(it.Position, t.Eta)})
			groups[it.ID.String()] = it.Groups
		}
	}
	return out, groups, nil
}

// gateTolerance is how much lower than the serving model's a group's impact ratio may be under a
// candidate, when it is below the four-fifths threshold: differences smaller than this are the noise
// of a holdout, not a change of policy.
const gateTolerance = 0.02

// fairnessGate refuses a candidate under which some group's impact ratio over the holdout lists (its
// share of the top 10 against its share of the lists, by country and by self-declared attribute) is
// below the four-fifths threshold and lower than under the serving model by more than gateTolerance:
// a new model may not make a group worse off where it is already under the threshold, nor bring it
// there.
func fairnessGate(serving learn.Model, groups map[string]map[string]string) learn.Gate {
	type judged struct {
		ratio   map[string]float64
		flagged map[string]bool
	}
	judge := func(m learn.Model, holdout []learn.Example) judged {
		selected, pool := map[string]map[string]int{}, map[string]map[string]int{}
		for _, l := range learn.Group(holdout) {
			ranked := append([]learn.Example(nil), l...)
			sortBy(ranked, m)
			for i, e := range ranked {
				for a, g := range groups[e.ItemID] {
					add2(pool, a, g, 1)
					if i < learn.EvalK {
						add2(selected, a, g, 1)
					}
				}
			}
		}
		out := judged{ratio: map[string]float64{}, flagged: map[string]bool{}}
		for a, p := range pool {
			if a == "region" {
				continue // every candidate of a region's list is of that region
			}
			// ImpactRatio flags only groups with pools large enough to judge (fairness.Config.MinPool).
			r, flagged := fairness.ImpactRatio(selected[a], p)
			for g, v := range r {
				out.ratio[fairness.Key(a, g)] = v
			}
			for _, g := range flagged {
				out.flagged[fairness.Key(a, g)] = true
			}
		}
		return out
	}
	return func(candidate learn.Model, holdout []learn.Example) (bool, string) {
		was, now := judge(serving, holdout), judge(candidate, holdout)
		for _, k := range slices.Sorted(maps.Keys(now.flagged)) {
			if !was.flagged[k] || now.ratio[k] < was.ratio[k]-gateTolerance {
				return false, fmt.Sprintf("the impact ratio of %s would fall to %.3f from %.3f, below the four-fifths threshold", k, now.ratio[k], was.ratio[k])
			}
		}
		return true, "no group falls below the four-fifths threshold, or further below it, than under the serving model"
	}
}

func sortBy(l []learn.Example, m learn.Model) {
	slices.SortStableFunc(l, func(a, b learn.Example) int { return cmp.Compare(m.Score(b.Features), m.Score(a.Features)) })
}

// Evaluation is the outcome of Train or Evaluate.
type Evaluation struct {
	Version    int              `json:"version"`
	Serving    int              `json:"serving"`
	Weights    score.Weights    `json:"weights"`
	Comparison learn.Comparison `json:"comparison"`
	Train      int              `json:"train_examples"`
	Holdout    int              `json:"holdout_examples"`
}

// serving returns the region's serving model (version 0, the hand-set weights, when none).
func (t *Trainer) serving(ctx context.Context, q rowQuerier) (learn.Model, error) {
	ms, err := readModels(ctx, q, t.anchor.Bytes())
	if err != nil {
		return learn.Model{}, err
	}
	m := learn.Model{Region: t.region, Version: 0, Weights: score.Default().Vector()}
	for _, sm := range ms {
		if sm.Serving {
			w, err := weightsFrom(sm.Weights)
			if err != nil {
				return m, err
			}
			m.Version, m.Weights = sm.Version, w.Vector()
		}
	}
	return m, nil
}

func (t *Trainer) anchorShard() (shardpool.Routed, error) { return t.pools.Route(t.anchor) }

// Train fits a new model on all but the newest Holdout share of the lists, evaluates it against the
// serving model on that holdout, and stores it as the next version, not serving.
func (t *Trainer) Train(ctx context.Context, opts learn.TrainOptions, note string) (Evaluation, error) {
	all, groups, err := t.Examples(ctx)
	if err != nil {
		return Evaluation{}, err
	}
	train, holdout, _ := learn.SplitByTime(all, 1-t.Holdout)
	shard, err := t.anchorShard()
	if err != nil {
		return Evaluation{}, err
	}
	serving, err := t.serving(ctx, shard.Pool)
	if err != nil {
		return Evaluation{}, err
	}
	if opts.Init == nil {
		opts.Init = serving.Weights
	}
	w, stats, err := learn.Train(train, opts)
	if errors.Is(err, learn.ErrNoPairs) {
		return Evaluation{}, fmt.Errorf("matching: nothing to learn from yet in %s: %d examples, and no list in which one item fared better than another (opened, applied to, hired): %w",
			t.region, len(train), err)
	}
	if err != nil {
		return Evaluation{}, fmt.Errorf("matching: training on %d examples: %w", len(train), err)
	}
	cand := learn.Model{Region: t.region, Weights: w}
	comparison := learn.Evaluate(cand, serving, holdout, fairnessGate(serving, groups))
	weights, err := score.FromVector(w)
	if err != nil {
		return Evaluation{}, err
	}
	figures := map[string]any{}
	for k, v := range comparison.Figures() {
		figures[k] = v
	}
	figures["train_examples"], figures["holdout_examples"] = len(train), len(holdout)
	figures["train_pairs"], figures["final_loss"] = stats.Pairs, stats.FinalLoss
	figures["better"], figures["fairness_gate_passed"], figures["promotable"] = comparison.Better, comparison.GatePassed, comparison.Promote
	figures["reason"], figures["evaluated_against"] = comparison.Reason, serving.Version
	rawW, _ := json.Marshal(weightsMap(weights))
	rawF, _ := json.Marshal(figures)
	var version int
	err = pgx.BeginFunc(ctx, shard.Pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, nextVersionSQL, t.anchor.Bytes()).Scan(&version); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, insertModelSQL, t.anchor.Bytes(), version, rawW, rawF, note)
		return err
	})
	if err != nil {
		return Evaluation{}, fmt.Errorf("matching: storing the model: %w", err)
	}
	return Evaluation{Version: version, Serving: serving.Version, Weights: weights, Comparison: comparison, Train: len(train), Holdout: len(holdout)}, nil
}

// Evaluate compares a stored version with the serving model on the current holdout.
func (t *Trainer) Evaluate(ctx context.Context, version int) (Evaluation, error) {
	shard, err := t.anchorShard()
	if err != nil {
		return Evaluation{}, err
	}
	ms, err := readModels(ctx, shard.Pool, t.anchor.Bytes())
	if err != nil {
		return Evaluation{}, err
	}
	var cand *StoredModel
	for i := range ms {
		if ms[i].Version == version {
			cand = &ms[i]
		}
	}
	if cand == nil {
		return Evaluation{}, fmt.Errorf("matching: region %s has no model version %d", t.region, version)
	}
	w, err := weightsFrom(cand.Weights)
	if err != nil {
		return Evaluation{}, err
	}
	serving, err := t.serving(ctx, shard.Pool)
	if err != nil {
		return Evaluation{}, err
	}
	all, groups, err := t.Examples(ctx)
	if err != nil {
		return Evaluation{}, err
	}
	_, holdout, _ := learn.SplitByTime(all, 1-t.Holdout)
	comparison := learn.Evaluate(learn.Model{Region: t.region, Version: version, Weights: w.Vector()}, serving, holdout, fairnessGate(serving, groups))
	return Evaluation{Version: version, Serving: serving.Version, Weights: w, Comparison: comparison, Holdout: len(holdout)}, nil
}

// ErrNotPromotable is returned by Promote for a model the evaluation refuses.
var ErrNotPromotable = errors.New("matching: the model is not better than the serving one, or fails the fairness gate")

// Promote evaluates version against the serving model and makes it serve only if it ranks better on
// the holdout and passes the fairness gate.
func (t *Trainer) Promote(ctx context.Context, version int) (Evaluation, error) {
	ev, err := t.Evaluate(ctx, version)
	if err != nil {
		return ev, err
	}
	if !ev.Comparison.Promote {
		return ev, fmt.Errorf("%w: %s", ErrNotPromotable, ev.Comparison.Reason)
	}
	return ev, t.serve(ctx, version)
}

// Rollback makes version serve again without evaluation (0: the hand-set weights).
func (t *Trainer) Rollback(ctx context.Context, version int) error { return t.serve(ctx, version) }

func (t *Trainer) serve(ctx context.Context, version int) error {
	shard, err := t.anchorShard()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, shard.Pool, func(tx pgx.Tx) error {
		if version != 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM ai.models WHERE ksid = $1 AND version = $2`, t.anchor.Bytes(), version).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("matching: region %s has no model version %d", t.region, version)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE ai.models SET serving = false WHERE ksid = $1 AND serving`, t.anchor.Bytes()); err != nil {
			return err
		}
		if version == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE ai.models SET serving = true, promoted_at = now() WHERE ksid = $1 AND version = $2`, t.anchor.Bytes(), version)
		return err
	})
}

// Models lists the region's models.
func (t *Trainer) Models(ctx context.Context) ([]StoredModel, error) {
	shard, err := t.anchorShard()
	if err != nil {
		return nil, err
	}
	return readModels(ctx, shard.Pool, t.anchor.Bytes())
}
