// Package side reads a party's side of a contract on that party's home shard: the contract itself on
// the client's, the reference row on the freelancer's. It is the hiring feature's (which writes both)
// and stands apart so that readers such as the reviews feature need none of the rest of it.
package side

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Contract statuses.
const (
	Active    = "active"
	Completed = "completed"
	Cancelled = "cancelled"
)

// Side is a contract as one of its parties' home shard holds it: the contract itself on the client's
// shard, the reference row on the freelancer's. Both carry the same fields; the reference row may lag
// the contract by an outbox delivery.
type Side struct {
	ID, JobID, ProposalID, ClientID, FreelancerID shardkey.ID
	Status                                        string
	StartedAt                                     time.Time
	CompletedAt, CancelledAt                      *time.Time
}

// Other returns the party of the contract that is not user (ok false if user is neither).
func (s Side) Other(user shardkey.ID) (shardkey.ID, bool) {
	switch user {
	case s.ClientID:
		return s.FreelancerID, true
	case s.FreelancerID:
		return s.ClientID, true
	}
	return shardkey.ID{}, false
}

// Sides reads a party's side of a contract on that party's home shard (the reviews feature binds a
// review to it).
type Sides struct{ a *feature.Deps }

// NewSides returns the reader on a's shards.
func NewSides(a *feature.Deps) *Sides { return &Sides{a: a} }

const (
	// The client's side: the contract, on the client's shard.
	clientSideSQL = `SELECT id, job_id, proposal_id, client_id, freelancer_id, status, started_at, completed_at, cancelled_at
		FROM core.contracts WHERE ksid = $1 AND id = $2 AND client_id = $3`
	// The freelancer's side: the reference row, on the freelancer's shard.
	freelancerSideSQL = `SELECT contract_id, job_id, proposal_id, client_id, freelancer_id, status, started_at, completed_at, cancelled_at
		FROM core.contract_refs WHERE ksid = $1 AND contract_id = $2 AND freelancer_id = $3`
)

// Side returns contract as user's home shard knows it; user must be homed in this node's region (a
// replay error otherwise). ok is false when user is not a party of the contract, or there is no such
// contract (or its reference row has not reached the freelancer's shard yet).
func (s *Sides) Side(ctx context.Context, user, contract shardkey.ID) (Side, bool, error) {
	shard, err := s.a.ReadShard(ctx, user.KeyspaceID())
	if err != nil {
		return Side{}, false, err
	}
	ksid := shard.Route.KeyspaceID
	// The contract's ID carries its client's ksid; after a pin the client's rows live under the new ksid,
	// which the topology's relocation map gives for the old one.
	q := freelancerSideSQL
	if cr, err := s.a.Pools.Route(contract.KeyspaceID()); err == nil && cr.Route.KeyspaceID == ksid {
		q = clientSideSQL
	}
	side, err := scanSide(shard.Pool.QueryRow(ctx, q, ksid.Bytes(), contract.Bytes(), user.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Side{}, false, nil
	}
	if err != nil {
		return Side{}, false, fmt.Errorf("hiring/side: reading contract %s for %s: %w", contract, user, err)
	}
	return side, true, nil
}

func scanSide(row pgx.Row) (Side, error) {
	var (
		s                                     Side
		id, job, proposal, client, freelancer []byte
	)
	if err := row.Scan(&id, &job, &proposal, &client, &freelancer, &s.Status, &s.StartedAt, &s.CompletedAt, &s.CancelledAt); err != nil {
		return Side{}, err
	}
	if err := ParseIDs(map[*shardkey.ID][]byte{&s.ID: id, &s.JobID: job, &s.ProposalID: proposal, &s.ClientID: client,
		&s.FreelancerID: freelancer}); err != nil {
		return Side{}, err
	}
	s.StartedAt = s.StartedAt.UTC()
	return s, nil
}

// ParseIDs decodes stored IDs into their destinations.
func ParseIDs(m map[*shardkey.ID][]byte) error {
	for dst, b := range m {
		id, err := shardkey.IDFromBytes(b)
		if err != nil {
			return fmt.Errorf("hiring/side: stored ID: %w", err)
		}
		*dst = id
	}
	return nil
}
