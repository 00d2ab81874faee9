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
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// Matching is the honest fallback until the matching engine ships: the Jaccard index of two normalised
// skill sets, |shared| / |union|, from 0 (nothing shared) to 1 (the same skills). Each shard scores its
// candidates that share at least one skill (the GIN index on skills finds them), returns its best
// `limit` and, in the same round trip (a pgx batch), how many candidates it has in all, so the answer can
// say how many people were considered.
const (
	// $1 the job's skills (normalised, distinct), $2 the job's ID (salt of the tie-break), $3/$4 the
	// shard's keyranges, $5 the limit. Profile skills are folded again (lower, trim) in case a profile was
	// written by something that did not normalise them.
	matchFreelancersSQL = `
SELECT p.user_id, p.skills, m.score, sha256(p.user_id || $2::bytea) AS tie, count(*) OVER () AS overlapping
FROM core.profiles AS p
JOIN auth.users AS u ON u.ksid = p.ksid AND u.id = p.user_id
CROSS JOIN LATERAL (
	SELECT count(*) FILTER (WHERE d.s = ANY($1::text[]))::float8
	     / (count(*) + cardinality($1::text[]) - count(*) FILTER (WHERE d.s = ANY($1::text[])))::float8 AS score
	FROM (SELECT DISTINCT lower(btrim(s)) AS s FROM unnest(p.skills) AS s) AS d
) AS m
WHERE p.available AND u.role = 'freelancer' AND u.deleted_at IS NULL
  AND p.skills && $1::text[]
  AND EXISTS (SELECT 1 FROM unnest($3::bytea[], $4::bytea[]) AS r(lo, hi) WHERE p.ksid >= r.lo AND p.ksid < r.hi)
ORDER BY m.score DESC, tie DESC
LIMIT $5`

	countFreelancersSQL = `
SELECT count(*)
FROM core.profiles AS p
JOIN auth.users AS u ON u.ksid = p.ksid AND u.id = p.user_id
WHERE p.available AND u.role = 'freelancer' AND u.deleted_at IS NULL
  AND EXISTS (SELECT 1 FROM unnest($1::bytea[], $2::bytea[]) AS r(lo, hi) WHERE p.ksid >= r.lo AND p.ksid < r.hi)`

	// $1 the freelancer's skills, $2/$3 the shard's keyranges, $4 the limit. Ties go to the newer job.
	matchJobsSQL = `
SELECT ` + jobCols + `, m.score, count(*) OVER () AS overlapping
FROM core.jobs AS j
CROSS JOIN LATERAL (
	SELECT count(*) FILTER (WHERE d.s = ANY($1::text[]))::float8
	     / (count(*) + cardinality($1::text[]) - count(*) FILTER (WHERE d.s = ANY($1::text[])))::float8 AS score
	FROM (SELECT DISTINCT lower(btrim(s)) AS s FROM unnest(j.skills) AS s) AS d
) AS m
WHERE j.status = 'open'
  AND j.skills && $1::text[]
  AND EXISTS (SELECT 1 FROM unnest($2::bytea[], $3::bytea[]) AS r(lo, hi) WHERE j.ksid >= r.lo AND j.ksid < r.hi)
ORDER BY m.score DESC, j.id DESC
LIMIT $4`

	countOpenJobsSQL = `
SELECT count(*) FROM core.jobs AS j
WHERE j.status = 'open'
  AND EXISTS (SELECT 1 FROM unnest($1::bytea[], $2::bytea[]) AS r(lo, hi) WHERE j.ksid >= r.lo AND j.ksid < r.hi)`

	profileSkillsSQL = `SELECT skills FROM core.profiles WHERE ksid = $1 AND user_id = $2`
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

func (s *Service) matching(w http.ResponseWriter, r *http.Request) error {
	caller := feature.Caller(r)
	limit, err := rest.Limit(r)
	if err != nil {
		return err
	}
	if v := r.URL.Query().Get("job_id"); v != "" {
		id, err := shardkey.ParseIDOfKind(v, shardkey.KindJob)
		if err != nil {
			return apierror.Invalid(map[string]string{"job_id": "is not a job ID"}).WithCause(err)
		}
		return s.matchFreelancers(w, r, caller, id, limit)
	}
	if caller.Role != authn.Freelancer {
		return apierror.Invalid(map[string]string{"job_id": "is required (only a freelancer may omit it, to get jobs for themselves)"})
	}
	return s.matchJobs(w, r, caller, limit)
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
	shard, err := s.a.ReadShard(id.KeyspaceID())
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
	ranges := s.ownedRanges()
	res := shardpool.Scatter(ctx, s.a.Pools.Targets(s.a.Region), s.scatterOpts(),
		func(ctx context.Context, t shardpool.Target) (shardMatches[MatchedFreelancer], error) {
			ra := ranges[t.Shard]
			return batch(ctx, t, countFreelancersSQL, []any{ra.lo, ra.hi},
				matchFreelancersSQL, []any{want, id.Bytes(), ra.lo, ra.hi, limit},
				func(row pgx.CollectableRow) (MatchedFreelancer, int64, error) {
					var (
						m      MatchedFreelancer
						uid    []byte
						theirs []string
						n      int64
					)
					if err := row.Scan(&uid, &theirs, &m.Score, &m.tie, &n); err != nil {
						return m, 0, err
					}
					var err error
					if m.FreelancerID, err = shardkey.IDFromBytes(uid); err != nil {
						return m, 0, err
					}
					m.Reasons = reasons(want, theirs, "missing skills")
					return m, n, nil
				})
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
	shard, err := s.a.ReadShard(caller.KSID)
	if err != nil {
		return err
	}
	var have []string
	err = shard.Pool.QueryRow(ctx, profileSkillsSQL, shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes()).Scan(&have)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
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
	ranges := s.ownedRanges()
	res := shardpool.Scatter(ctx, s.a.Pools.Targets(s.a.Region), s.scatterOpts(),
		func(ctx context.Context, t shardpool.Target) (shardMatches[MatchedJob], error) {
			ra := ranges[t.Shard]
			return batch(ctx, t, countOpenJobsSQL, []any{ra.lo, ra.hi},
				matchJobsSQL, []any{have, ra.lo, ra.hi, limit},
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
