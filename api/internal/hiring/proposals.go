package hiring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/outcomes"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// proposalRequest is the body of POST /jobs/{id}/proposals.
type proposalRequest struct {
	CoverLetter string      `json:"cover_letter"`
	Rate        json.Number `json:"rate"`
	Currency    string      `json:"currency"`
}

type proposalInput struct {
	coverLetter string
	rate        jobs.Money
	currency    string // upper case; "" for the job's
}

func (s *Service) normalizeProposal(req proposalRequest) (proposalInput, map[string]string) {
	bad := map[string]string{}
	var in proposalInput
	if req.Rate == "" {
		bad["rate"] = "is required"
	} else if m, err := jobs.ParseMoney(req.Rate.String()); err != nil || m <= 0 || m > MaxRate {
		bad["rate"] = "must be a positive amount with at most two decimals, below 10 000 000 000"
	} else {
		in.rate = m
	}
	// The job's currency is the only one accepted (checked against the job); the job's own validation
	// made it an ISO 4217 code.
	in.currency = strings.ToUpper(strings.TrimSpace(req.Currency))
	if !utf8.ValidString(req.CoverLetter) {
		bad["cover_letter"] = "must be valid UTF-8"
	} else {
		in.coverLetter = strings.TrimSpace(s.san.Sanitize(req.CoverLetter))
		switch {
		case in.coverLetter == "":
			bad["cover_letter"] = "is required"
		case utf8.RuneCountInString(in.coverLetter) > MaxCoverLetter:
			bad["cover_letter"] = fmt.Sprintf("must be at most %d characters", MaxCoverLetter)
		}
	}
	return in, bad
}

// pathID reads {id} as an ID of kind; a malformed one names nothing: 404.
func pathID(r *http.Request, kind shardkey.Kind, what string) (shardkey.ID, error) {
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], kind)
	if err != nil {
		return id, apierror.NotFound(what).WithCause(err)
	}
	return id, nil
}

// readJob reads a job wherever it lives: from its owner's shard in this region, else from a node of its
// region. A job that does not exist is a 404.
func (s *Service) readJob(ctx context.Context, id shardkey.ID) (jobs.Job, error) {
	rt, err := s.a.Pools.Route(id.KeyspaceID())
	switch {
	case errors.Is(err, topology.ErrNoShard):
		return jobs.Job{}, apierror.NotFound("job").WithCause(err)
	case err != nil:
		return jobs.Job{}, err
	}
	if rt.Region == s.a.Region {
		shard, err := s.a.ReadShard(ctx, id.KeyspaceID())
		if err != nil {
			return jobs.Job{}, err
		}
		j, err := jobs.Read(ctx, shard.Pool, shard.Route.KeyspaceID, id)
		if errors.Is(err, jobs.ErrNoJob) {
			return jobs.Job{}, apierror.NotFound("job")
		}
		return j, err
	}
	if s.a.Peers == nil {
		return jobs.Job{}, apierror.RegionUnavailable(rt.Region, 5*time.Second)
	}
	var j jobs.Job
	if err := s.a.Peers.Call(ctx, rt.Region, http.MethodGet, "/api/v1/jobs/"+id.String(), nil, &j); err != nil {
		return jobs.Job{}, feature.PeerError(ctx, rt.Region, err)
	}
	if j.ID != id {
		return jobs.Job{}, fmt.Errorf("hiring: region %s answered job %s for %s", rt.Region, j.ID, id)
	}
	return j, nil
}

// score is the author's fit to the job, from 0 to 1: how much of the job's skills the author's profile
// covers (weight 0.8), and the author's verified rating, shrunk towards the middle while it rests on
// few reviews (weight 0.2; a Bayesian average with a prior of 3 stars worth 5 reviews).
func score(job, have []string, reviews int, average float64) float64 {
	coverage := 0.0
	if len(job) > 0 {
		// Both sides were normalised when stored; folding again keeps the comparison exact anyway.
		mine := map[string]bool{}
		for _, h := range have {
			mine[skills.Fold(h)] = true
		}
		n := 0
		for _, want := range job {
			if mine[skills.Fold(want)] {
				n++
			}
		}
		coverage = float64(n) / float64(len(job))
	}
	const prior, weight = 3.0, 5.0
	bayes := (prior*weight + average*float64(reviews)) / (weight + float64(reviews))
	return roundScore(float32(0.8*coverage + 0.2*(bayes-1)/4))
}

func (s *Service) apply(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	if err := caller.Can(authn.CapApply); err != nil {
		return err
	}
	jobID, err := pathID(r, shardkey.KindJob, "job")
	if err != nil {
		return err
	}
	var req proposalRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	in, bad := s.normalizeProposal(req)
	if len(bad) > 0 {
		return apierror.Invalid(bad)
	}
	// The proposal is written on the author's shard: a node of another region answers with the replay
	// hint before reading the job.
	shard, err := s.a.WriteShard(ctx, caller.KSID)
	if err != nil {
		return err
	}
	job, err := s.readJob(ctx, jobID)
	if err != nil {
		return err
	}
	switch {
	case job.Status != jobs.StatusOpen:
		return jobs.NotOpen(job.Status)
	case job.OwnerID == caller.UserID:
		return apierror.Forbidden("you cannot apply to your own job")
	case in.currency != "" && in.currency != job.Currency:
		return apierror.Invalid(map[string]string{"currency": "must be the job's currency, " + job.Currency})
	}
	have, err := s.profiles.Skills(ctx, shard, caller.UserID)
	if err != nil {
		return fmt.Errorf("hiring: the author's skills: %w", err)
	}
	n, avg, err := s.ratings.Rating(ctx, caller.UserID)
	if err != nil {
		// The rating only orders proposals; without it the proposal still goes in.
		s.log.Warn("hiring: rating unavailable for a proposal's score", "user", caller.UserID, "err", err)
		n, avg = 0, 0
	}
	fit := score(job.Skills, have, n, avg)
	ksid := shard.Route.KeyspaceID
	id, err := s.a.IDs.New(shardkey.KindProposal, ksid)
	if err != nil {
		return fmt.Errorf("hiring: new ID: %w", err)
	}
	var p Proposal
	err = pgx.BeginFunc(ctx, shard.Pool, func(tx pgx.Tx) error {
		var err error
		p, err = scanProposal(tx.QueryRow(ctx, insertProposalSQL, ksid.Bytes(), id.Bytes(), caller.UserID.Bytes(), jobID.Bytes(),
			job.OwnerID.Bytes(), in.coverLetter, int64(in.rate), job.Currency, fit))
		switch code, constraint := pgCode(err); {
		case code == "23505" && constraint == "proposals_one_live_idx":
			return apierror.Conflict("proposal_exists", "you already have a live proposal for this job; withdraw it to send another").WithCause(err)
		case code == "23503":
			return apierror.Unauthenticated("the account no longer exists").WithCause(err)
		case err != nil:
			return fmt.Errorf("hiring: insert proposal: %w", err)
		}
		if err := outcomes.Record(ctx, tx, outcomes.Event{KSID: ksid, Kind: outcomes.ProposalCreated, JobID: jobID,
			FreelancerID: caller.UserID, ClientID: job.OwnerID, SubjectID: id,
			Details: map[string]any{"rate": p.Rate, "currency": p.Currency, "score": p.Score}}); err != nil {
			return err
		}
		return s.syncProposal(ctx, tx, ksid, p.ProposalRef)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/proposals/"+p.ID.String())
	rest.WriteJSON(w, http.StatusCreated, p)
	return nil
}

// proposalCursor is the position after the last item of a proposals page.
type proposalCursor struct {
	V     int         `json:"v"`
	Sort  string      `json:"s"`
	Score float64     `json:"sc,omitempty"`
	T     time.Time   `json:"t"`
	ID    shardkey.ID `json:"id"`
	// Of binds the cursor to its listing (the job, or the author).
	Of shardkey.ID `json:"of"`
}

// firstKey sorts after every row: the first page's "after" position (IDs start with their time, so
// none begins with nine 0xff bytes).
func firstKey() (time.Time, []byte) {
	return time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), []byte(shardpool.Unbounded)
}

func decodeCursor(r *http.Request, sort string, of shardkey.ID, kind shardkey.Kind) (*proposalCursor, error) {
	c := r.URL.Query().Get("cursor")
	if c == "" {
		return nil, nil
	}
	var cur proposalCursor
	if err := rest.DecodeCursor(c, &cur); err != nil {
		return nil, err
	}
	if cur.V != 1 || cur.Sort != sort || cur.Of != of || cur.ID.Kind() != kind {
		return nil, apierror.Invalid(map[string]string{"cursor": "is not a cursor of this listing"})
	}
	return &cur, nil
}

func (s *Service) listJobProposals(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	jobID, err := pathID(r, shardkey.KindJob, "job")
	if err != nil {
		return err
	}
	limit, err := rest.Limit(r)
	if err != nil {
		return err
	}
	sort := r.URL.Query().Get("sort")
	switch sort {
	case "":
		sort = "newest"
	case "newest", "best":
	default:
		return apierror.Invalid(map[string]string{"sort": "must be newest or best"})
	}
	cur, err := decodeCursor(r, sort, jobID, shardkey.KindProposal)
	if err != nil {
		return err
	}
	// Only the job's owner lists its proposals, from the owner's shard: this node's when the caller is
	// the owner (the router sends the caller's requests to the caller's region).
	rt, err := s.a.Pools.Route(jobID.KeyspaceID())
	me, merr := s.a.Pools.Route(caller.KSID)
	if err != nil || merr != nil || rt.Region != s.a.Region || rt.Route.KeyspaceID != me.Route.KeyspaceID {
		return apierror.NotFound("job")
	}
	shard, err := s.a.ReadShard(ctx, caller.KSID)
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	job, err := jobs.Read(ctx, shard.Pool, ksid, jobID)
	if errors.Is(err, jobs.ErrNoJob) || (err == nil && job.OwnerID != caller.UserID) {
		return apierror.NotFound("job")
	}
	if err != nil {
		return err
	}
	afterT, afterID := firstKey()
	afterScore := 2.0 // above every score
	if cur != nil {
		afterT, afterID, afterScore = cur.T, cur.ID.Bytes(), cur.Score
	}
	var rows pgx.Rows
	if sort == "best" {
		rows, err = shard.Pool.Query(ctx, listJobProposalsBestSQL, ksid.Bytes(), jobID.Bytes(), afterScore, afterT, afterID, limit+1)
	} else {
		rows, err = shard.Pool.Query(ctx, listJobProposalsNewestSQL, ksid.Bytes(), jobID.Bytes(), afterT, afterID, limit+1)
	}
	if err != nil {
		return err
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ProposalRef, error) { return scanRef(row) })
	if err != nil {
		return err
	}
	page := rest.Page[ProposalRef]{Items: items}
	if len(items) > limit {
		last := items[limit-1]
		page.Items = items[:limit]
		page.NextCursor = rest.EncodeCursor(proposalCursor{V: 1, Sort: sort, Score: storedScore(last.Score), T: last.CreatedAt, ID: last.ID, Of: jobID})
	}
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

// storedScore is the score as the real column compares it (the cursor's key must be the stored value).
func storedScore(f float64) float64 { return float64(float32(f)) }

func (s *Service) listOwnProposals(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	limit, err := rest.Limit(r)
	if err != nil {
		return err
	}
	cur, err := decodeCursor(r, "own", caller.UserID, shardkey.KindProposal)
	if err != nil {
		return err
	}
	shard, err := s.a.ReadShard(ctx, caller.KSID)
	if err != nil {
		return err
	}
	afterT, afterID := firstKey()
	if cur != nil {
		afterT, afterID = cur.T, cur.ID.Bytes()
	}
	rows, err := shard.Pool.Query(ctx, listOwnProposalsSQL, shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes(), afterT, afterID, limit+1)
	if err != nil {
		return err
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Proposal, error) { return scanProposal(row) })
	if err != nil {
		return err
	}
	page := rest.Page[Proposal]{Items: items}
	if len(items) > limit {
		last := items[limit-1]
		page.Items = items[:limit]
		page.NextCursor = rest.EncodeCursor(proposalCursor{V: 1, Sort: "own", T: last.CreatedAt, ID: last.ID, Of: caller.UserID})
	}
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

// getProposal reads a proposal on its author's shard, where the router sends a request for its ID: the
// author and the job's owner read it (cover letter included); anyone else gets 404.
func (s *Service) getProposal(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	id, err := pathID(r, shardkey.KindProposal, "proposal")
	if err != nil {
		return err
	}
	shard, err := s.a.ReadShard(ctx, id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("proposal").WithCause(err)
	}
	if err != nil {
		return err
	}
	p, err := scanProposal(shard.Pool.QueryRow(ctx, getProposalSQL, shard.Route.KeyspaceID.Bytes(), id.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && caller.UserID != p.FreelancerID && caller.UserID != p.ClientID) {
		return apierror.NotFound("proposal")
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, p)
	return nil
}

// withdraw is DELETE /proposals/{id}: its author withdraws a pending proposal; the job owner's
// reference row follows through the outbox.
func (s *Service) withdraw(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	id, err := pathID(r, shardkey.KindProposal, "proposal")
	if err != nil {
		return err
	}
	shard, err := s.a.WriteShard(ctx, id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("proposal").WithCause(err)
	}
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	var p Proposal
	err = pgx.BeginFunc(ctx, shard.Pool, func(tx pgx.Tx) error {
		cur, err := scanProposal(tx.QueryRow(ctx, lockProposalSQL, ksid.Bytes(), id.Bytes()))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return apierror.NotFound("proposal")
		case err != nil:
			return err
		case caller.UserID == cur.ClientID:
			return apierror.Forbidden("only its author withdraws a proposal")
		case caller.UserID != cur.FreelancerID:
			return apierror.NotFound("proposal")
		case cur.Status != ProposalPending:
			return apierror.Conflict("proposal_not_pending", "the proposal is "+cur.Status+"; only a pending one can be withdrawn")
		}
		if p, err = scanProposal(tx.QueryRow(ctx, setProposalStatusSQL, ksid.Bytes(), id.Bytes(), ProposalWithdrawn)); err != nil {
			return err
		}
		return s.syncProposal(ctx, tx, ksid, p.ProposalRef)
	})
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, p)
	return nil
}
