package hiring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/outbox"
	"github.com/8thdegree/meridian/api/internal/outcomes"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// The hiring messages of the outbox. Each names the side it is applied on; docs/hiring.md has the
// sequences and the races they settle.
const (
	// kindProposalSync carries a proposal's reference fields from its author's shard to the job
	// owner's: sent when it is made (pending) and when it is withdrawn.
	kindProposalSync = "hiring.proposal_sync"
	// kindProposalClose tells the author's shard that the job owner's shard closed a pending proposal
	// (the job closed, was deleted, or was not open when the proposal arrived).
	kindProposalClose = "hiring.proposal_closed"
	// kindContractSync carries a contract's state from the client's shard (the authority) to the
	// freelancer's reference row: sent when it starts and when it ends.
	kindContractSync = "hiring.contract_sync"
	// kindContractEnd asks the client's shard to cancel a contract whose proposal its author had
	// withdrawn before the acceptance reached them.
	kindContractEnd = "hiring.contract_cancel"
)

// proposalClose is the payload of kindProposalClose.
type proposalClose struct {
	ProposalID shardkey.ID `json:"proposal_id"`
}

// contractCancel is the payload of kindContractEnd.
type contractCancel struct {
	ContractID shardkey.ID `json:"contract_id"`
	By         shardkey.ID `json:"by"`
	Reason     string      `json:"reason"`
}

func decodePayload(d outbox.Delivery, v any) error {
	if err := json.Unmarshal(d.Payload, v); err != nil {
		return apierror.BadRequest(fmt.Sprintf("%s: bad payload: %v", d.Kind, err)).WithCause(err)
	}
	return nil
}

// syncProposal enqueues p's reference fields for the job owner's shard. owner is the author's ksid now
// (the shard of tx).
func (s *Service) syncProposal(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, p ProposalRef) error {
	return s.out.Enqueue(ctx, tx, outbox.Message{KSID: owner, To: p.JobID.KeyspaceID(), Kind: kindProposalSync,
		Key: "proposal:" + p.ID.String() + ":" + p.Status, Payload: p})
}

// syncContract enqueues c's state for the freelancer's reference row. owner is the client's ksid now.
func (s *Service) syncContract(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, c Contract) error {
	return s.out.Enqueue(ctx, tx, outbox.Message{KSID: owner, To: c.FreelancerID.KeyspaceID(), Kind: kindContractSync,
		Key: "contract:" + c.ID.String() + ":" + c.Status, Payload: c})
}

// closeProposal enqueues, from the job owner's shard, the closing of a pending proposal for its author.
func (s *Service) closeProposal(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, proposal, freelancer shardkey.ID) error {
	return s.out.Enqueue(ctx, tx, outbox.Message{KSID: owner, To: freelancer.KeyspaceID(), Kind: kindProposalClose,
		Key: "proposal:" + proposal.String() + ":closed", Payload: proposalClose{ProposalID: proposal}})
}

// applyProposalSync runs on the job owner's shard. A new proposal gets its reference row if the job is
// still open there (it may have closed since its author's node read it: the author is then told the
// proposal is closed); a withdrawal moves a pending reference row to withdrawn. A withdrawal that
// arrives after the owner accepted changes nothing here: the contract's message to the author's shard
// settles it (applyContractSync).
func (s *Service) applyProposalSync(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var p ProposalRef
	if err := decodePayload(d, &p); err != nil {
		return err
	}
	// The job's row is held until the reference row is in: a concurrent close either ran before (and
	// this sees it closed) or waits, and then closes this row too.
	jobOwner, jobStatus, err := jobs.Lock(ctx, tx, d.To, p.JobID)
	if errors.Is(err, jobs.ErrNoJob) {
		if p.Status == ProposalPending {
			return s.closeProposal(ctx, tx, d.To, p.ID, p.FreelancerID)
		}
		return nil // a withdrawal for a job that is gone: nothing left to change
	}
	if err != nil {
		return err
	}
	switch p.Status {
	case ProposalPending:
		if jobStatus != jobs.StatusOpen || jobOwner != p.ClientID {
			return s.closeProposal(ctx, tx, d.To, p.ID, p.FreelancerID)
		}
	case ProposalWithdrawn:
		if _, err := tx.Exec(ctx, withdrawRefSQL, d.To.Bytes(), p.ID.Bytes()); err != nil {
			return err
		}
	default:
		return apierror.BadRequest(kindProposalSync + ": a proposal syncs as pending or withdrawn, not " + p.Status)
	}
	// Inserted the first time either message arrives (a withdrawal can overtake the creation on a
	// retry); a row already there keeps its status.
	_, err = tx.Exec(ctx, insertRefSQL, d.To.Bytes(), p.ID.Bytes(), p.JobID.Bytes(), p.FreelancerID.Bytes(), p.ClientID.Bytes(),
		int64(p.Rate), p.Currency, p.Score, p.Status, p.CreatedAt)
	return err
}

// applyProposalClose runs on the author's shard: a pending proposal becomes closed.
func (s *Service) applyProposalClose(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var m proposalClose
	if err := decodePayload(d, &m); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, closeProposalSQL, d.To.Bytes(), m.ProposalID.Bytes())
	return err
}

// applyContractSync runs on the freelancer's shard: the reference row takes the contract's state, and
// the proposal becomes accepted. If its author had withdrawn it before the acceptance arrived (the two
// crossed between regions), the author's withdrawal stands: the client's shard is asked to cancel the
// contract, which then syncs back as cancelled.
func (s *Service) applyContractSync(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var c Contract
	if err := decodePayload(d, &c); err != nil {
		return err
	}
	var by []byte
	if c.CancelledBy != nil {
		by = c.CancelledBy.Bytes()
	}
	// Under a savepoint: a freelancer whose account is gone fails the foreign key, and the message must
	// then be taken (recorded in the inbox) rather than retried for ever.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	var inserted bool
	err = sp.QueryRow(ctx, upsertContractRefSQL, d.To.Bytes(), c.ID.Bytes(), c.JobID.Bytes(), c.ProposalID.Bytes(),
		c.ClientID.Bytes(), c.FreelancerID.Bytes(), int64(c.Rate), c.Currency, c.Status, c.StartedAt, c.CompletedAt,
		c.CancelledAt, by).Scan(&inserted)
	switch code, _ := pgCode(err); {
	case errors.Is(err, pgx.ErrNoRows):
		return sp.Commit(ctx) // the reference row already holds a final state
	case code == "23503":
		s.log.Warn("hiring: contract for a freelancer who no longer exists", "contract", c.ID, "freelancer", c.FreelancerID)
		return sp.Rollback(ctx)
	case err != nil:
		_ = sp.Rollback(ctx)
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		return err
	}
	p, err := scanProposal(tx.QueryRow(ctx, lockProposalSQL, d.To.Bytes(), c.ProposalID.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case p.Status == ProposalPending:
		_, err = tx.Exec(ctx, setProposalStatusSQL, d.To.Bytes(), p.ID.Bytes(), ProposalAccepted)
		return err
	case p.Status == ProposalWithdrawn && inserted && c.Status == ContractActive:
		return s.out.Enqueue(ctx, tx, outbox.Message{KSID: d.To, To: c.ID.KeyspaceID(), Kind: kindContractEnd,
			Key:     "contract:" + c.ID.String() + ":cancel",
			Payload: contractCancel{ContractID: c.ID, By: c.FreelancerID, Reason: "the proposal was withdrawn before the acceptance arrived"}})
	}
	return nil
}

// applyContractCancel runs on the client's shard: an active contract whose proposal was withdrawn is
// cancelled in the freelancer's name, and its state syncs back.
func (s *Service) applyContractCancel(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var m contractCancel
	if err := decodePayload(d, &m); err != nil {
		return err
	}
	c, err := scanContract(tx.QueryRow(ctx, lockContractSQL, d.To.Bytes(), m.ContractID.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Status != ContractActive || c.FreelancerID != m.By {
		return nil // it ended another way first; that state has been synced already
	}
	return s.endContract(ctx, tx, d.To, c, ContractCancelled, m.By, m.Reason)
}

// endContract completes or cancels the active contract c on its client's shard (owner, in tx), records
// the outcome and syncs the new state to the freelancer's shard.
func (s *Service) endContract(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, c Contract, status string, by shardkey.ID, reason string) error {
	var (
		ended Contract
		err   error
		kind  = outcomes.ContractCompleted
	)
	if status == ContractCompleted {
		ended, err = scanContract(tx.QueryRow(ctx, completeContractSQL, owner.Bytes(), c.ID.Bytes()))
	} else {
		kind = outcomes.ContractCancelled
		ended, err = scanContract(tx.QueryRow(ctx, cancelContractSQL, owner.Bytes(), c.ID.Bytes(), by.Bytes()))
	}
	if err != nil {
		return fmt.Errorf("hiring: ending contract %s: %w", c.ID, err)
	}
	details := map[string]any{"by": by.String()}
	if reason != "" {
		details["reason"] = reason
	}
	if err := outcomes.Record(ctx, tx, outcomes.Event{KSID: owner, Kind: kind, JobID: c.JobID, FreelancerID: c.FreelancerID,
		ClientID: c.ClientID, SubjectID: c.ID, Details: details}); err != nil {
		return err
	}
	return s.syncContract(ctx, tx, owner, ended)
}

// JobClosed implements jobs.Closer: inside the transaction that closes, completes or deletes job on its
// owner's shard, the job's pending proposals are closed and their authors told.
func (s *Service) JobClosed(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, job shardkey.ID) error {
	rows, err := tx.Query(ctx, closeJobRefsSQL, owner.Bytes(), job.Bytes())
	if err != nil {
		return fmt.Errorf("hiring: closing the proposals of %s: %w", job, err)
	}
	type closed struct{ proposal, freelancer shardkey.ID }
	var all []closed
	for rows.Next() {
		var p, f []byte
		if err := rows.Scan(&p, &f); err != nil {
			rows.Close()
			return err
		}
		var c closed
		if err := parseIDs(map[*shardkey.ID][]byte{&c.proposal: p, &c.freelancer: f}); err != nil {
			rows.Close()
			return err
		}
		all = append(all, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range all {
		if err := s.closeProposal(ctx, tx, owner, c.proposal, c.freelancer); err != nil {
			return err
		}
	}
	return nil
}

var _ jobs.Closer = (*Service)(nil)
