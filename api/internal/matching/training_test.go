package matching

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/matching/learn"
	"github.com/8thdegree/meridian/api/internal/matching/score"
	"github.com/8thdegree/meridian/api/internal/matching/synth"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// The trainer learns from lists recorded in the real shards: simulated lists of a generated market,
// shown under the hand-set weights with a known position bias, their opens, and the hiring outcomes
// that followed. The model it trains is better than the hand-set weights on the time holdout and is
// promoted; a deliberately worse model is refused; rollback restores the hand-set weights.
func TestTrainPromoteRollback(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	m := synth.Generate(11, synth.DefaultOptions())
	imps := synth.Simulate(m, m.Ranker(score.Default().Vector()), synth.DefaultSimOptions())
	// eu-west's lists carry no groups, so the fairness gate has nothing to weigh and the better model
	// serves; us-east's carry the freelancers' countries and attributes, and the gate weighs them.
	load(t, e, m, imps, "eu-west", false)
	load(t, e, m, imps, "us-east", true)

	tr, err := NewTrainer(e.h.Pools, e.h.Pools.Table(), "eu-west")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := tr.Train(ctx, learn.DefaultTrainOptions(), "simulated")
	if err != nil {
		t.Fatal(err)
	}
	c := ev.Comparison
	t.Logf("eu-west: trained version %d on %d examples, held out %d: NDCG@10 %.4f against the hand-set weights' %.4f; %s",
		ev.Version, ev.Train, ev.Holdout, c.CandidateNDCG, c.ServingNDCG, c.Reason)
	if ev.Version != 1 || !c.Better || !c.Promote {
		t.Fatalf("the trained model is not promotable: %+v", ev)
	}
	if _, err := tr.Promote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// A worse model: the hand-set weights negated.
	neg := score.Default().Vector()
	for i := range neg {
		neg[i] = -neg[i]
	}
	w, _ := score.FromVector(neg)
	raw, _ := json.Marshal(weightsMap(w))
	shard, err := tr.anchorShard()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shard.Pool.Exec(ctx, insertModelSQL, tr.anchor.Bytes(), 2, raw, []byte(`{}`), "negated"); err != nil {
		t.Fatal(err)
	}
	if ev, err := tr.Promote(ctx, 2); !errors.Is(err, ErrNotPromotable) {
		t.Fatalf("the negated model was not refused: %v %+v", err, ev)
	}
	// The node serves what is promoted, and the hand-set weights after a rollback.
	s := e.svc["eu-west"]
	if err := s.pollModel(ctx); err != nil || s.model.Load().Version != 1 {
		t.Fatalf("serving after promotion: %v %+v", err, s.model.Load())
	}
	if err := tr.Rollback(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.pollModel(ctx); err != nil || s.model.Load().Version != 0 {
		t.Fatalf("serving after rollback: %v %+v", err, s.model.Load())
	}
	if err := tr.Rollback(ctx, 7); err == nil {
		t.Fatal("rolled back to a version that does not exist")
	}
	ms, err := tr.Models(ctx)
	if err != nil || len(ms) != 2 || ms[0].Serving || ms[1].Serving || ms[0].Figures["ndcg@10"] == nil {
		t.Fatalf("models: %v %+v", err, ms)
	}

	// us-east: the same outcomes, with groups. The trained weights lean on ratings, which these
	// simulated freelancers of one country have fewer of: the gate refuses to let that country fall
	// under the four-fifths rule.
	tu, err := NewTrainer(e.h.Pools, e.h.Pools.Table(), "us-east")
	if err != nil {
		t.Fatal(err)
	}
	eu, err := tu.Train(ctx, learn.DefaultTrainOptions(), "simulated, with groups")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("us-east: NDCG@10 %.4f against %.4f; %s", eu.Comparison.CandidateNDCG, eu.Comparison.ServingNDCG, eu.Comparison.Reason)
	if !eu.Comparison.Better || eu.Comparison.Promote || !strings.Contains(eu.Comparison.Reason, "impact ratio") {
		t.Fatalf("the fairness gate did not hold the better model back: %+v", eu.Comparison)
	}
	if _, err := tu.Promote(ctx, eu.Version); !errors.Is(err, ErrNotPromotable) {
		t.Fatalf("promoted past the fairness gate: %v", err)
	}
}

// load records the impressions as lists of a client homed in region, with their opens and the hiring
// outcomes that followed; withGroups keeps each item's fairness groups.
func load(t *testing.T, e *env, m *synth.Market, imps []synth.Impression, region string, withGroups bool) {
	t.Helper()
	ctx := context.Background()
	client := e.h.CreateUser(t, authn.Client, region)
	rt, err := e.h.Pools.Route(client.KSID)
	if err != nil {
		t.Fatal(err)
	}
	newID := func(kind shardkey.Kind) shardkey.ID {
		id, err := e.h.IDs.New(kind, client.KSID)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	jobIDs := make([]shardkey.ID, len(m.Jobs))
	for i := range jobIDs {
		jobIDs[i] = newID(shardkey.KindJob)
	}
	frIDs := make([]shardkey.ID, len(m.Freelancers))
	for i := range frIDs {
		frIDs[i] = newID(shardkey.KindUser)
	}
	type shown struct {
		ID       shardkey.ID       `json:"id"`
		Position int               `json:"position"`
		Signals  []float64         `json:"signals"`
		Groups   map[string]string `json:"groups,omitempty"`
	}
	recorded := map[[2]int]map[string]bool{}
	b := &pgx.Batch{}
	outcome := func(kind string, job, f int, details map[string]any) {
		key := [2]int{job, f}
		if recorded[key] == nil {
			recorded[key] = map[string]bool{}
		}
		if recorded[key][kind] {
			return
		}
		recorded[key][kind] = true
		if details == nil {
			details = map[string]any{}
		}
		raw, _ := json.Marshal(details)
		b.Queue(`INSERT INTO ai.outcomes (ksid, kind, job_id, freelancer_id, client_id, subject_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			client.KSID.Bytes(), kind, jobIDs[job].Bytes(), frIDs[f].Bytes(), client.ID.Bytes(), newID(shardkey.KindContract).Bytes(), raw)
	}
	for _, imp := range imps {
		list := uuid.New()
		items := make([]shown, len(imp.Items))
		for i, s := range imp.Items {
			items[i] = shown{ID: frIDs[s.Freelancer], Position: s.Position, Signals: m.Features(imp.Job, s.Freelancer)}
			if withGroups {
				items[i].Groups = m.Freelancers[s.Freelancer].Groups()
				delete(items[i].Groups, "region")
			}
		}
		raw, _ := json.Marshal(items)
		b.Queue(`INSERT INTO ai.match_lists (ksid, id, at, region, direction, subject_id, scope, model_version, items) VALUES ($1, $2, $3, $4, 'freelancers', $5, 'region', 0, $6)`,
			client.KSID.Bytes(), list, imp.At, region, jobIDs[imp.Job].Bytes(), raw)
		for _, s := range imp.Items {
			if s.Opened {
				b.Queue(`INSERT INTO ai.match_events (ksid, list_id, item_id, type, position, at) VALUES ($1, $2, $3, 'opened', $4, $5)`,
					client.KSID.Bytes(), list, frIDs[s.Freelancer].Bytes(), s.Position, imp.At)
			}
			if s.Applied {
				outcome("proposal_created", imp.Job, s.Freelancer, nil)
			}
			if s.Hired {
				outcome("contract_started", imp.Job, s.Freelancer, nil)
			}
			if s.Completed {
				outcome("contract_completed", imp.Job, s.Freelancer, nil)
				outcome("review_posted", imp.Job, s.Freelancer, map[string]any{"rating": s.Rating})
			}
		}
	}
	if err := rt.Pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
}
