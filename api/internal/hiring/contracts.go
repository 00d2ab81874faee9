package hiring

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/outcomes"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// accept is POST /proposals/{id}/accept, served on the job owner's shard (the caller's): the
// proposal's reference row, the job and the new contract change in one transaction, and the contract
// syncs to the freelancer's shard through the outbox, so it succeeds while the freelancer's region is
// down.
func (s *Service) accept(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	proposalID, err := pathID(r, shardkey.KindProposal, "proposal")
	if err != nil {
		return err
	}
	shard, err := s.a.WriteShard(ctx, caller.KSID)
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	var c Contract
	err = pgx.BeginFunc(ctx, shard.Pool, func(tx pgx.Tx) error {
		// The job's row first, then the reference row, in the order a close of the job takes them.
		ref, err := scanRef(tx.QueryRow(ctx, getRefSQL, ksid.Bytes(), proposalID.Bytes()))
		switch {
		case errors.Is(err, pgx.ErrNoRows), err == nil && ref.ClientID != caller.UserID:
			// Not a proposal to one of the caller's jobs (or not arrived yet): nothing to accept.
			return apierror.NotFound("proposal")
		case err != nil:
			return err
		}
		before, err := jobs.StartWork(ctx, tx, ksid, ref.JobID)
		switch {
		case errors.Is(err, jobs.ErrNotOpen):
			return jobs.NotOpen(before)
		case errors.Is(err, jobs.ErrNoJob):
			return apierror.NotFound("proposal")
		case err != nil:
			return err
		}
		ref, err = scanRef(tx.QueryRow(ctx, lockRefSQL, ksid.Bytes(), proposalID.Bytes()))
		if errors.Is(err, pgx.ErrNoRows) {
			return apierror.NotFound("proposal")
		}
		if err != nil {
			return err
		}
		if ref.Status != ProposalPending {
			return apierror.Conflict("proposal_not_pending", "the proposal is "+ref.Status+"; only a pending one can be accepted")
		}
		id, err := s.a.IDs.New(shardkey.KindContract, ksid)
		if err != nil {
			return fmt.Errorf("hiring: new ID: %w", err)
		}
		c, err = scanContract(tx.QueryRow(ctx, insertContractSQL, ksid.Bytes(), id.Bytes(), ref.JobID.Bytes(), ref.ID.Bytes(),
			caller.UserID.Bytes(), ref.FreelancerID.Bytes(), int64(ref.Rate), ref.Currency))
		if err != nil {
			return fmt.Errorf("hiring: insert contract: %w", err)
		}
		if _, err := tx.Exec(ctx, setRefStatusSQL, ksid.Bytes(), ref.ID.Bytes(), ProposalAccepted); err != nil {
			return err
		}
		if err := outcomes.Record(ctx, tx, outcomes.Event{KSID: ksid, Kind: outcomes.ContractStarted, JobID: c.JobID,
			FreelancerID: c.FreelancerID, ClientID: c.ClientID, SubjectID: c.ID,
			Details: map[string]any{"proposal_id": c.ProposalID.String(), "rate": c.Rate, "currency": c.Currency}}); err != nil {
			return err
		}
		return s.syncContract(ctx, tx, ksid, c)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/contracts/"+c.ID.String())
	rest.WriteJSON(w, http.StatusCreated, c)
	return nil
}

// contractCursor is the position after the last contract of a page.
type contractCursor struct {
	V      int         `json:"v"`
	Status string      `json:"st"`
	T      time.Time   `json:"t"`
	ID     shardkey.ID `json:"id"`
	Of     shardkey.ID `json:"of"`
}

func (s *Service) listContracts(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	limit, err := rest.Limit(r)
	if err != nil {
		return err
	}
	var status *string
	switch st := r.URL.Query().Get("status"); st {
	case "":
	case ContractActive, ContractCompleted, ContractCancelled:
		status = &st
	default:
		return apierror.Invalid(map[string]string{"status": "must be active, completed or cancelled"})
	}
	afterT, afterID := firstKey()
	if raw := r.URL.Query().Get("cursor"); raw != "" {
		var cur contractCursor
		if err := rest.DecodeCursor(raw, &cur); err != nil {
			return err
		}
		want := ""
		if status != nil {
			want = *status
		}
		if cur.V != 1 || cur.Status != want || cur.Of != caller.UserID || cur.ID.Kind() != shardkey.KindContract {
			return apierror.Invalid(map[string]string{"cursor": "is not a cursor of this listing"})
		}
		afterT, afterID = cur.T, cur.ID.Bytes()
	}
	shard, err := s.a.ReadShard(ctx, caller.KSID)
	if err != nil {
		return err
	}
	rows, err := shard.Pool.Query(ctx, listContractsSQL, shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes(), status,
		afterT, afterID, limit+1)
	if err != nil {
		return err
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Contract, error) { return scanContract(row) })
	if err != nil {
		return err
	}
	page := rest.Page[Contract]{Items: items}
	if len(items) > limit {
		last := items[limit-1]
		page.Items = items[:limit]
		cur := contractCursor{V: 1, T: last.StartedAt, ID: last.ID, Of: caller.UserID}
		if status != nil {
			cur.Status = *status
		}
		page.NextCursor = rest.EncodeCursor(cur)
	}
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

// getContract reads a contract on its client's shard, where the router sends a request for its ID;
// either party reads it, anyone else gets 404.
func (s *Service) getContract(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	id, err := pathID(r, shardkey.KindContract, "contract")
	if err != nil {
		return err
	}
	shard, err := s.a.ReadShard(ctx, id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("contract").WithCause(err)
	}
	if err != nil {
		return err
	}
	c, err := scanContract(shard.Pool.QueryRow(ctx, getContractSQL, shard.Route.KeyspaceID.Bytes(), id.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && caller.UserID != c.ClientID && caller.UserID != c.FreelancerID) {
		return apierror.NotFound("contract")
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (s *Service) complete(w http.ResponseWriter, r *http.Request) error {
	return s.end(w, r, ContractCompleted)
}

func (s *Service) cancel(w http.ResponseWriter, r *http.Request) error {
	return s.end(w, r, ContractCancelled)
}

// end completes (the client) or cancels (either party) an active contract on its client's shard.
func (s *Service) end(w http.ResponseWriter, r *http.Request, status string) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	id, err := pathID(r, shardkey.KindContract, "contract")
	if err != nil {
		return err
	}
	shard, err := s.a.WriteShard(ctx, id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("contract").WithCause(err)
	}
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	var ended Contract
	err = pgx.BeginFunc(ctx, shard.Pool, func(tx pgx.Tx) error {
		c, err := scanContract(tx.QueryRow(ctx, lockContractSQL, ksid.Bytes(), id.Bytes()))
		switch {
		case errors.Is(err, pgx.ErrNoRows), err == nil && caller.UserID != c.ClientID && caller.UserID != c.FreelancerID:
			return apierror.NotFound("contract")
		case err != nil:
			return err
		case status == ContractCompleted && caller.UserID != c.ClientID:
			return apierror.Forbidden("only the client completes a contract")
		case c.Status != ContractActive:
			return apierror.Conflict("contract_not_active", "the contract is "+c.Status+"; only an active one can be "+status)
		}
		if err := s.endContract(ctx, tx, ksid, c, status, caller.UserID, ""); err != nil {
			return err
		}
		ended, err = scanContract(tx.QueryRow(ctx, getContractSQL, ksid.Bytes(), id.Bytes()))
		return err
	})
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, ended)
	return nil
}
