// Package outcomes records what happened after a match — a proposal made, a contract started,
// completed or cancelled, a review posted — in ai.outcomes on the shard of the record's owner, in the
// transaction of the write itself, so the matching engine's learning loop reads every outcome exactly
// once and never one whose write rolled back.
package outcomes

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Kind is what happened.
type Kind string

// The outcomes of hiring, in the order they usually come.
const (
	ProposalCreated   Kind = "proposal_created"
	ContractStarted   Kind = "contract_started"
	ContractCompleted Kind = "contract_completed"
	ContractCancelled Kind = "contract_cancelled"
	ReviewPosted      Kind = "review_posted"
)

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool {
	switch k {
	case ProposalCreated, ContractStarted, ContractCompleted, ContractCancelled, ReviewPosted:
		return true
	}
	return false
}

// Event is one outcome.
type Event struct {
	// KSID is the owner of the record the outcome is about (the proposal's author, the contract's
	// client, the review's reviewee): the shard the transaction runs on.
	KSID shardkey.KeyspaceID
	Kind Kind
	// The job and the two parties.
	JobID, FreelancerID, ClientID shardkey.ID
	// SubjectID is the proposal, contract or review; with Kind it identifies the outcome, so that
	// recording it twice (a retried or redelivered write) keeps one.
	SubjectID shardkey.ID
	// Details are the kind's figures (rate and currency, a rating, who cancelled); nil is {}.
	Details map[string]any
	// At is when it happened; zero means the transaction's time.
	At time.Time
}

// Execer is a transaction (or a pool) of the owner's shard.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

const insertSQL = `
INSERT INTO ai.outcomes (ksid, kind, job_id, freelancer_id, client_id, subject_id, details, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, now()))
ON CONFLICT (ksid, subject_id, kind) DO NOTHING`

// Record stores e in tx, the transaction of the write it is about.
func Record(ctx context.Context, tx Execer, e Event) error {
	if !e.Kind.Valid() {
		return fmt.Errorf("outcomes: unknown kind %q", e.Kind)
	}
	details := e.Details
	if details == nil {
		details = map[string]any{}
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("outcomes: details: %w", err)
	}
	var at *time.Time
	if !e.At.IsZero() {
		at = &e.At
	}
	if _, err := tx.Exec(ctx, insertSQL, e.KSID.Bytes(), string(e.Kind), e.JobID.Bytes(), e.FreelancerID.Bytes(),
		e.ClientID.Bytes(), e.SubjectID.Bytes(), raw, at); err != nil {
		return fmt.Errorf("outcomes: record %s: %w", e.Kind, err)
	}
	return nil
}
