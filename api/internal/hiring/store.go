package hiring

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/api/internal/hiring/side"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Contract statuses.
const (
	ContractActive    = side.Active
	ContractCompleted = side.Completed
	ContractCancelled = side.Cancelled
)

// parseIDs decodes stored IDs into their destinations.
var parseIDs = side.ParseIDs

// Proposal statuses. pending is the only one that changes: to withdrawn (its author), accepted (the
// job's owner, with a contract) or closed (the job stopped taking proposals).
const (
	ProposalPending   = "pending"
	ProposalWithdrawn = "withdrawn"
	ProposalAccepted  = "accepted"
	ProposalClosed    = "closed"
)

// ProposalRef is a proposal as the job owner's shard knows it: everything but the cover letter, which
// is read from the author's region (GET /proposals/{id}).
type ProposalRef struct {
	ID           shardkey.ID `json:"id"`
	JobID        shardkey.ID `json:"job_id"`
	FreelancerID shardkey.ID `json:"freelancer_id"`
	ClientID     shardkey.ID `json:"client_id"`
	Status       string      `json:"status"`
	Rate         jobs.Money  `json:"rate"`
	Currency     string      `json:"currency"`
	// Score is the author's fit to the job when the proposal was made (0..1): "best first" sorts by it.
	Score     float64   `json:"score"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Proposal is a proposal as its author and the job's owner read it: the reference fields and the
// cover letter.
type Proposal struct {
	ProposalRef
	CoverLetter string `json:"cover_letter"`
}

// Contract is a contract as either party reads it.
type Contract struct {
	ID           shardkey.ID  `json:"id"`
	JobID        shardkey.ID  `json:"job_id"`
	ProposalID   shardkey.ID  `json:"proposal_id"`
	ClientID     shardkey.ID  `json:"client_id"`
	FreelancerID shardkey.ID  `json:"freelancer_id"`
	Rate         jobs.Money   `json:"rate"`
	Currency     string       `json:"currency"`
	Status       string       `json:"status"`
	StartedAt    time.Time    `json:"started_at"`
	CompletedAt  *time.Time   `json:"completed_at"`
	CancelledAt  *time.Time   `json:"cancelled_at"`
	CancelledBy  *shardkey.ID `json:"cancelled_by"`
	UpdatedAt    time.Time    `json:"updated_at"`
}

// refCols are a reference row's columns, in scanRef's order; proposalCols the proposal's, the same
// fields then the cover letter.
const (
	refCols      = `proposal_id, job_id, freelancer_id, client_id, status, (rate * 100)::bigint, currency, score, created_at, updated_at`
	proposalCols = `id, job_id, freelancer_id, client_id, status, (rate * 100)::bigint, currency, score, created_at, updated_at, cover_letter`
)

// contractCols are a contract's columns; the reference rows have the same under contract_id.
const (
	contractCols = `id, job_id, proposal_id, client_id, freelancer_id, (rate * 100)::bigint, currency, status,
		started_at, completed_at, cancelled_at, cancelled_by, updated_at`
	contractRefCols = `contract_id, job_id, proposal_id, client_id, freelancer_id, (rate * 100)::bigint, currency, status,
		started_at, completed_at, cancelled_at, cancelled_by, updated_at`
)

const (
	insertProposalSQL = `
INSERT INTO core.proposals (ksid, id, freelancer_id, job_id, client_id, cover_letter, rate, currency, score)
VALUES ($1, $2, $3, $4, $5, $6, $7::bigint / 100.0, $8, $9)
RETURNING ` + proposalCols

	getProposalSQL  = `SELECT ` + proposalCols + ` FROM core.proposals WHERE ksid = $1 AND id = $2`
	lockProposalSQL = getProposalSQL + ` FOR UPDATE`

	setProposalStatusSQL = `UPDATE core.proposals SET status = $3 WHERE ksid = $1 AND id = $2 RETURNING ` + proposalCols

	// The author's proposals, newest first, keyset-paginated on (created_at, id).
	listOwnProposalsSQL = `
SELECT ` + proposalCols + ` FROM core.proposals
WHERE ksid = $1 AND freelancer_id = $2 AND (created_at, id) < ($3::timestamptz, $4::bytea)
ORDER BY created_at DESC, id DESC LIMIT $5`

	// A job's proposals, on the owner's shard: newest first, or best (highest score) first.
	listJobProposalsNewestSQL = `
SELECT ` + refCols + ` FROM core.job_proposals
WHERE ksid = $1 AND job_id = $2 AND (created_at, proposal_id) < ($3::timestamptz, $4::bytea)
ORDER BY created_at DESC, proposal_id DESC LIMIT $5`
	listJobProposalsBestSQL = `
SELECT ` + refCols + ` FROM core.job_proposals
WHERE ksid = $1 AND job_id = $2 AND (score, created_at, proposal_id) < ($3::real, $4::timestamptz, $5::bytea)
ORDER BY score DESC, created_at DESC, proposal_id DESC LIMIT $6`

	getRefSQL  = `SELECT ` + refCols + ` FROM core.job_proposals WHERE ksid = $1 AND proposal_id = $2`
	lockRefSQL = getRefSQL + ` FOR UPDATE`

	// A reference row arrives once (ON CONFLICT: a later status it already has stays).
	insertRefSQL = `
INSERT INTO core.job_proposals (ksid, proposal_id, job_id, freelancer_id, client_id, rate, currency, score, status, created_at)
VALUES ($1, $2, $3, $4, $5, $6::bigint / 100.0, $7, $8, $9, $10)
ON CONFLICT (ksid, proposal_id) DO NOTHING`

	// A pending reference row follows its proposal's withdrawal; any other status is final here.
	withdrawRefSQL = `UPDATE core.job_proposals SET status = 'withdrawn' WHERE ksid = $1 AND proposal_id = $2 AND status = 'pending'`

	setRefStatusSQL = `UPDATE core.job_proposals SET status = $3 WHERE ksid = $1 AND proposal_id = $2`

	// The job's pending proposals, closed with the job; RETURNING names their authors.
	closeJobRefsSQL = `UPDATE core.job_proposals SET status = 'closed'
WHERE ksid = $1 AND job_id = $2 AND status = 'pending' RETURNING proposal_id, freelancer_id`

	// A proposal the job owner's shard closed (the job closed or was gone): only a pending one changes.
	closeProposalSQL = `UPDATE core.proposals SET status = 'closed' WHERE ksid = $1 AND id = $2 AND status = 'pending'`

	insertContractSQL = `
INSERT INTO core.contracts (ksid, id, job_id, proposal_id, client_id, freelancer_id, rate, currency)
VALUES ($1, $2, $3, $4, $5, $6, $7::bigint / 100.0, $8)
RETURNING ` + contractCols

	getContractSQL  = `SELECT ` + contractCols + ` FROM core.contracts WHERE ksid = $1 AND id = $2`
	lockContractSQL = getContractSQL + ` FOR UPDATE`

	completeContractSQL = `UPDATE core.contracts SET status = 'completed', completed_at = greatest(now(), started_at)
WHERE ksid = $1 AND id = $2 RETURNING ` + contractCols
	cancelContractSQL = `UPDATE core.contracts SET status = 'cancelled', cancelled_at = greatest(now(), started_at), cancelled_by = $3
WHERE ksid = $1 AND id = $2 RETURNING ` + contractCols

	// The freelancer's reference row takes the contract's state as the client's shard sent it: inserted
	// the first time, then moved only out of active (a terminal state is final, and a late or repeated
	// message never turns it back).
	upsertContractRefSQL = `
INSERT INTO core.contract_refs AS r (ksid, contract_id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status,
	started_at, completed_at, cancelled_at, cancelled_by)
VALUES ($1, $2, $3, $4, $5, $6, $7::bigint / 100.0, $8, $9, $10, $11, $12, $13)
ON CONFLICT (ksid, contract_id) DO UPDATE SET status = EXCLUDED.status, completed_at = EXCLUDED.completed_at,
	cancelled_at = EXCLUDED.cancelled_at, cancelled_by = EXCLUDED.cancelled_by
WHERE r.status = 'active' AND EXCLUDED.status <> 'active'
RETURNING (xmax = 0) AS inserted`

	// The caller's contracts, as client (the contracts) and as freelancer (the reference rows), newest
	// first, keyset-paginated on (started_at, id); $3 filters on status when not NULL.
	listContractsSQL = `
SELECT * FROM (
	SELECT ` + contractCols + ` FROM core.contracts WHERE ksid = $1 AND client_id = $2
	UNION ALL
	SELECT ` + contractRefCols + ` FROM core.contract_refs WHERE ksid = $1 AND freelancer_id = $2
) AS c
WHERE ($3::text IS NULL OR c.status = $3) AND (c.started_at, c.id) < ($4::timestamptz, $5::bytea)
ORDER BY c.started_at DESC, c.id DESC LIMIT $6`
)

func scanProposal(row pgx.Row) (Proposal, error) {
	var p Proposal
	ref, err := scanRef(row, &p.CoverLetter)
	p.ProposalRef = ref
	return p, err
}

// scanRef reads refCols (or proposalCols' first part), then extra.
func scanRef(row pgx.Row, extra ...any) (ProposalRef, error) {
	var (
		p                        ProposalRef
		id, job, freelancer, cli []byte
		rate                     int64
		score                    float32
	)
	dest := append([]any{&id, &job, &freelancer, &cli, &p.Status, &rate, &p.Currency, &score, &p.CreatedAt, &p.UpdatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return ProposalRef{}, err
	}
	if err := parseIDs(map[*shardkey.ID][]byte{&p.ID: id, &p.JobID: job, &p.FreelancerID: freelancer, &p.ClientID: cli}); err != nil {
		return ProposalRef{}, err
	}
	p.Rate, p.Score = jobs.Money(rate), roundScore(score)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, nil
}

func scanContract(row pgx.Row) (Contract, error) {
	var (
		c                                     Contract
		id, job, proposal, client, freelancer []byte
		by                                    []byte
		rate                                  int64
	)
	if err := row.Scan(&id, &job, &proposal, &client, &freelancer, &rate, &c.Currency, &c.Status, &c.StartedAt,
		&c.CompletedAt, &c.CancelledAt, &by, &c.UpdatedAt); err != nil {
		return Contract{}, err
	}
	if err := parseIDs(map[*shardkey.ID][]byte{&c.ID: id, &c.JobID: job, &c.ProposalID: proposal, &c.ClientID: client,
		&c.FreelancerID: freelancer}); err != nil {
		return Contract{}, err
	}
	if by != nil {
		who, err := shardkey.IDFromBytes(by)
		if err != nil {
			return Contract{}, fmt.Errorf("hiring: stored cancelled_by: %w", err)
		}
		c.CancelledBy = &who
	}
	c.Rate = jobs.Money(rate)
	c.StartedAt, c.UpdatedAt = c.StartedAt.UTC(), c.UpdatedAt.UTC()
	for _, t := range []*time.Time{c.CompletedAt, c.CancelledAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return c, nil
}

// roundScore keeps the stored real's value without float32 noise in JSON (0.8 rather than 0.800000011920929).
func roundScore(f float32) float64 {
	return float64(int64(float64(f)*1e6+0.5)) / 1e6
}

// pgCode returns the SQLSTATE and constraint of a PostgreSQL error.
func pgCode(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}
