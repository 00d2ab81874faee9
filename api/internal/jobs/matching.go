package jobs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// MatchedFreelancer is a freelancer ranked for a job.
type MatchedFreelancer struct {
	FreelancerID shardkey.ID `json:"freelancer_id"`
	Score        float64     `json:"score"`
	Reasons      []string    `json:"reasons"`
	tie          []byte
}

// MatchedJob is an open job ranked for a freelancer.
type MatchedJob struct {
	JobID   shardkey.ID `json:"job_id"`
	Score   float64     `json:"score"`
	Reasons []string    `json:"reasons"`
	Job     Job         `json:"job"`
}

// Fairness tells a reader what they need to judge a ranking: how it was made, from which signals, over
// whom, how ties were broken, and what is missing.
type Fairness struct {
	Method         string   `json:"method"`
	Engine         string   `json:"engine"`
	Score          string   `json:"score"`
	SignalsUsed    []string `json:"signals_used"`
	SignalsNotUsed []string `json:"signals_not_used"`
	Eligible       string   `json:"eligible"`
	Region         string   `json:"region"`
	// CandidatesConsidered counts everyone eligible on the shards that answered; CandidatesWithOverlap
	// those sharing at least one skill, of whom the best are returned.
	CandidatesConsidered  int64    `json:"candidates_considered"`
	CandidatesWithOverlap int64    `json:"candidates_with_overlap"`
	Returned              int      `json:"returned"`
	TieBreak              string   `json:"tie_break"`
	Partial               bool     `json:"partial"`
	ShardsFailed          []string `json:"shards_failed"`
	Notes                 []string `json:"notes,omitempty"`
}

// MatchPage is the answer of /jobs/matching.
type MatchPage[T any] struct {
	Items    []T      `json:"items"`
	Fairness Fairness `json:"fairness"`
}

func (s *Service) fairness(eligible, tieBreak string) Fairness {
	return Fairness{
		Method:         "skill_overlap",
		Engine:         "fallback ranking; the matching engine will replace it",
		Score:          "Jaccard index of the normalised skill sets: shared skills / all skills of both, from 0 to 1",
		SignalsUsed:    []string{"skills"},
		SignalsNotUsed: []string{"ratings", "reviews", "price", "location", "history", "profile text", "demographics"},
		Eligible:       eligible,
		Region:         s.a.Region,
		TieBreak:       tieBreak,
		ShardsFailed:   []string{},
	}
}

type shardMatches[T any] struct {
	considered, overlapping int64
	items                   []T
}

func (s *Service) scatterOpts() shardpool.ScatterOptions {
	return shardpool.ScatterOptions{Concurrency: s.cfg.Concurrency, PerShardTimeout: s.cfg.ShardTimeout}
}

// batch sends the count and the ranking in one round trip.
func batch[T any](ctx context.Context, t shardpool.Target, countSQL string, countArgs []any, rankSQL string, rankArgs []any,
	scan func(pgx.CollectableRow) (T, int64, error)) (shardMatches[T], error) {
	var b pgx.Batch
	b.Queue(countSQL, countArgs...)
	b.Queue(rankSQL, rankArgs...)
	br := t.Pool.SendBatch(ctx, &b)
	defer br.Close()
	var out shardMatches[T]
	if err := br.QueryRow().Scan(&out.considered); err != nil {
		return out, err
	}
	rows, err := br.Query()
	if err != nil {
		return out, err
	}
	out.items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		v, n, err := scan(row)
		out.overlapping = n
		return v, err
	})
	if err != nil {
		return out, err
	}
	return out, br.Close()
}

func (s *Service) matchFreelancers(w http.ResponseWriter, r *http.Request, caller authn.Principal, id shardkey.ID, limit int) error {
	ctx := r.Context()
	shard, err := s.a.ReadShard(ctx, id.KeyspaceID())
	if err != nil {
		return err
	}
	job, err := scanJob(shard.Pool.QueryRow(ctx, ownJobSQL, shard.Route.KeyspaceID.Bytes(), id.Bytes(), caller.UserID.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) {
		return apierror.NotFound("job") // unknown, or not the caller's
	}
	if err != nil {
		return err
	}
	want, _ := skills.Normalize(job.Skills, "skills")
	fair := s.fairness("freelancers homed in region "+s.a.Region+" whose profile is marked available",
		"equal scores are ordered by a hash of the job and freelancer IDs: stable for this job, unrelated to account age or name")
	page := MatchPage[MatchedFreelancer]{Items: []MatchedFreelancer{}}
	if job.Status != StatusOpen {
		fair.Notes = append(fair.Notes, "the job is "+job.Status+"; matches are shown all the same")
	}
	if len(want) == 0 {
		fair.Notes = append(fair.Notes, "the job lists no skills, so nobody can be ranked by skill overlap; add skills to the job")
		page.Fairness = fair
		rest.WriteJSON(w, http.StatusOK, page)
		return nil
	}
	view, err := s.a.ReadRegion(ctx) // held while a keyrange of the region is frozen, see searchRegion
	if err != nil {
		return err
	}
	ranges := ownedRanges(view.Table)
	res := shardpool.Scatter(ctx, view.Targets, s.scatterOpts(),
		func(ctx context.Context, t shardpool.Target) (shardMatches[MatchedFreelancer], error) {
			ra := ranges[t.Shard]
			page, err := s.freelancers.Candidates(ctx, t, want, id.Bytes(), ra.Lo, ra.Hi, limit)
			out := shardMatches[MatchedFreelancer]{considered: page.Considered, overlapping: page.Overlapping}
			for _, c := range page.Items {
				out.items = append(out.items, MatchedFreelancer{FreelancerID: c.UserID, Score: c.Score, tie: c.Tie,
					Reasons: reasons(want, c.Skills, "missing skills")})
			}
			return out, err
		})
	if err := s.matchFailures(ctx, res.Failed, len(res.Values), &fair); err != nil {
		return err
	}
	var all []MatchedFreelancer
	for _, v := range res.Values {
		fair.CandidatesConsidered += v.Value.considered
		fair.CandidatesWithOverlap += v.Value.overlapping
		all = append(all, v.Value.items...)
	}
	slices.SortFunc(all, func(a, b MatchedFreelancer) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		if c := bytes.Compare(b.tie, a.tie); c != 0 {
			return c
		}
		return bytes.Compare(b.FreelancerID[:], a.FreelancerID[:])
	})
	if len(all) > limit {
		all = all[:limit]
	}
	for i := range all {
		all[i].Score = round4(all[i].Score)
	}
	page.Items = append(page.Items, all...)
	fair.Returned = len(page.Items)
	page.Fairness = fair
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (s *Service) matchJobs(w http.ResponseWriter, r *http.Request, caller authn.Principal, limit int) error {
	ctx := r.Context()
	shard, err := s.a.ReadShard(ctx, caller.KSID)
	if err != nil {
		return err
	}
	have, err := s.freelancers.Skills(ctx, shard, caller.UserID)
	if err != nil {
		return err
	}
	have, _ = skills.Normalize(have, "skills")
	fair := s.fairness("open jobs of clients homed in region "+s.a.Region,
		"equal scores are ordered newest job first")
	page := MatchPage[MatchedJob]{Items: []MatchedJob{}}
	if len(have) == 0 {
		fair.Notes = append(fair.Notes, "your profile lists no skills, so no job can be ranked by skill overlap; add skills to your profile")
		page.Fairness = fair
		rest.WriteJSON(w, http.StatusOK, page)
		return nil
	}
	view, err := s.a.ReadRegion(ctx) // held while a keyrange of the region is frozen, see searchRegion
	if err != nil {
		return err
	}
	ranges := ownedRanges(view.Table)
	res := shardpool.Scatter(ctx, view.Targets, s.scatterOpts(),
		func(ctx context.Context, t shardpool.Target) (shardMatches[MatchedJob], error) {
			ra := ranges[t.Shard]
			return batch(ctx, t, countOpenJobsSQL, []any{ra.Lo, ra.Hi},
				matchJobsSQL, []any{have, ra.Lo, ra.Hi, limit},
				func(row pgx.CollectableRow) (MatchedJob, int64, error) {
					var (
						m MatchedJob
						n int64
					)
					job, err := scanJob(row, &m.Score, &n)
					if err != nil {
						return m, 0, err
					}
					m.Job, m.JobID = job, job.ID
					m.Reasons = reasons(job.Skills, have, "the job also asks for")
					return m, n, nil
				})
		})
	if err := s.matchFailures(ctx, res.Failed, len(res.Values), &fair); err != nil {
		return err
	}
	var all []MatchedJob
	for _, v := range res.Values {
		fair.CandidatesConsidered += v.Value.considered
		fair.CandidatesWithOverlap += v.Value.overlapping
		all = append(all, v.Value.items...)
	}
	slices.SortFunc(all, func(a, b MatchedJob) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return bytes.Compare(b.JobID[:], a.JobID[:])
	})
	if len(all) > limit {
		all = all[:limit]
	}
	for i := range all {
		all[i].Score = round4(all[i].Score)
	}
	page.Items = append(page.Items, all...)
	fair.Returned = len(page.Items)
	page.Fairness = fair
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

// matchFailures records failed shards in the fairness report, or fails the request when none answered.
func (s *Service) matchFailures(ctx context.Context, failed []shardpool.ShardError, answered int, fair *Fairness) error {
	for _, f := range failed {
		rest.Logger(ctx).Warn("job matching: shard did not answer", "shard", f.Shard, "err", f.Err)
		fair.ShardsFailed = append(fair.ShardsFailed, f.Shard)
	}
	if answered == 0 {
		return apierror.Unavailable("no shard of region "+s.a.Region+" answered; retry shortly", time.Second).
			WithCause(fmt.Errorf("%w: %s", errNoShardAnswered, strings.Join(fair.ShardsFailed, ", ")))
	}
	if len(failed) > 0 {
		fair.Partial = true
		fair.Notes = append(fair.Notes, "some shards did not answer: candidates homed there were not considered")
	}
	return nil
}

// reasons explains a score: the skills shared, and those of want that have lacks.
func reasons(want, have []string, lackLabel string) []string {
	got := make(map[string]struct{}, len(have))
	for _, s := range have {
		got[strings.ToLower(strings.Join(strings.Fields(s), " "))] = struct{}{}
	}
	var shared, lacking []string
	for _, s := range want {
		if _, ok := got[s]; ok {
			shared = append(shared, s)
		} else {
			lacking = append(lacking, s)
		}
	}
	out := []string{"shared skills: " + strings.Join(shared, ", ")}
	if len(lacking) > 0 {
		out = append(out, lackLabel+": "+strings.Join(lacking, ", "))
	}
	return out
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }
