package reviews

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/hiring/side"
	"github.com/8thdegree/meridian/api/internal/outcomes"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// internalCreatePath is the route on which the reviewee's region writes a review that a reviewer of
// another region posted.
const internalCreatePath = "/internal/reviews/contract"

// The answers of a review that its contract does not allow.
func notAParty() error {
	return &apierror.Error{Status: http.StatusForbidden, Code: "not_a_party",
		Message: "only the client or the freelancer of a contract may review it"}
}

func notCompleted() error {
	return apierror.Conflict("contract_not_completed", "the contract is not completed; a review comes after completion")
}

func alreadyReviewed(err error) error {
	return apierror.Conflict("already_reviewed", "you have already reviewed this contract").WithCause(err)
}

func revieweeGone() error {
	return apierror.Conflict("reviewee_deleted", "the other party of the contract has deleted their account")
}

// create serves POST /reviews/ on the caller's home node: the caller's side of the contract is read
// from the caller's shard, and the review is written on the other party's, here or through the other
// party's region.
func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	if err := caller.Can(authn.CapPostReview); err != nil {
		return err
	}
	var req createRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	in, bad := req.normalize(s.san)
	if len(bad) > 0 {
		return apierror.Invalid(bad)
	}
	// A caller homed in another region gets 421 naming it: the edge replays the request there.
	cs, ok, err := s.contracts.Side(ctx, caller.UserID, in.contractID)
	if err != nil {
		return err
	}
	if !ok {
		return notAParty()
	}
	if cs.Status != side.Completed {
		return notCompleted()
	}
	reviewee, ok := cs.Other(caller.UserID)
	if !ok {
		return notAParty()
	}
	rt, err := s.a.Pools.Route(reviewee.KeyspaceID())
	switch {
	case errors.Is(err, shardpool.ErrNoTopology):
		return apierror.Unavailable("the node has no topology yet", time.Second).WithCause(err)
	case errors.Is(err, topology.ErrNoShard):
		// The contract names a party whose keyrange no region serves: the data is inconsistent.
		return fmt.Errorf("reviews: contract %s: reviewee %s has no shard: %w", cs.ID, reviewee, err)
	case err != nil:
		return err
	}
	var rv Review
	if rt.Region == s.a.Region {
		if rv, err = s.insert(ctx, cs, caller.UserID, reviewee, in.rating, in.comment); err != nil {
			return err
		}
	} else {
		if s.a.Peers == nil {
			return apierror.RegionUnavailable(rt.Region, 5*time.Second)
		}
		body := internalCreateRequest{ContractID: cs.ID.String(), ReviewerID: caller.UserID.String(),
			RevieweeID: reviewee.String(), Rating: &in.rating, Comment: in.comment}
		if err := s.a.Peers.Call(ctx, rt.Region, http.MethodPost, feature.InternalPath(internalCreatePath), body, &rv); err != nil {
			return feature.PeerError(ctx, rt.Region, err)
		}
	}
	w.Header().Set("Location", "/api/v1/reviews/"+rv.ID.String())
	rest.WriteJSON(w, http.StatusCreated, rv)
	return nil
}

// createInternal serves the reviewer's region: the reviewee's side of the contract, read here on the
// reviewee's shard, must be completed and name the reviewer as the other party; then the review is
// written as create writes a local one.
func (s *Service) createInternal(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req internalCreateRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	in, bad := req.normalize(s.san)
	if len(bad) > 0 {
		return apierror.Invalid(bad)
	}
	cs, ok, err := s.contracts.Side(ctx, in.revieweeID, in.contractID)
	if err != nil {
		return err
	}
	if !ok {
		return notAParty()
	}
	if other, ok := cs.Other(in.revieweeID); !ok || other != in.reviewerID {
		return notAParty()
	}
	if cs.Status != side.Completed {
		// The reviewee's reference row may lag the contract by an outbox delivery: a retry succeeds
		// once it has arrived.
		return notCompleted()
	}
	rv, err := s.insert(ctx, cs, in.reviewerID, in.revieweeID, in.rating, in.comment)
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusCreated, rv)
	return nil
}

// insert writes a verified review of the contract side on the reviewee's shard, with its
// review_posted outcome in the same transaction, and invalidates the reviewee's stats after the commit.
func (s *Service) insert(ctx context.Context, cs side.Side, reviewer, reviewee shardkey.ID, rating int, comment string) (Review, error) {
	shard, err := s.a.WriteShard(ctx, reviewee.KeyspaceID())
	if err != nil {
		return Review{}, err
	}
	ksid := shard.Route.KeyspaceID
	id, err := s.a.IDs.New(shardkey.KindReview, ksid)
	if err != nil {
		return Review{}, fmt.Errorf("reviews: new ID: %w", err)
	}
	var rv Review
	err = pgx.BeginFunc(ctx, shard.Pool, func(tx pgx.Tx) error {
		var err error
		rv, err = scanReview(tx.QueryRow(ctx, insertReviewSQL, ksid.Bytes(), id.Bytes(), reviewer.Bytes(), reviewee.Bytes(),
			cs.JobID.Bytes(), cs.ID.Bytes(), int16(rating), comment))
		if err != nil {
			return err
		}
		return outcomes.Record(ctx, tx, outcomes.Event{KSID: ksid, Kind: outcomes.ReviewPosted, JobID: cs.JobID,
			FreelancerID: cs.FreelancerID, ClientID: cs.ClientID, SubjectID: rv.ID,
			Details: map[string]any{"rating": rating, "reviewer_id": reviewer.String()}})
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows), pgCode(err) == "23503":
		return Review{}, revieweeGone()
	case pgCode(err) == "23505" && pgConstraint(err) == oneReviewPerContract:
		return Review{}, alreadyReviewed(err)
	case err != nil:
		return Review{}, fmt.Errorf("reviews: insert: %w", err)
	}
	s.cache.invalidate(ctx, rv.RevieweeID)
	return rv, nil
}
