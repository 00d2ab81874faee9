package jobs

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// jobCols are the columns of a Job, in scanJob's order, for queries that call core.jobs "j". Budgets are
// read in cents so that no float ever holds money.
const jobCols = `j.id, j.owner_id, j.title, j.description, j.skills,
	(j.budget_min * 100)::bigint AS budget_min_cents, (j.budget_max * 100)::bigint AS budget_max_cents,
	j.currency, j.remote, j.status, j.created_at, j.updated_at`

const (
	insertJobSQL = `
INSERT INTO core.jobs AS j (ksid, id, owner_id, title, description, skills, budget_min, budget_max, currency, remote)
VALUES ($1, $2, $3, $4, $5, $6, $7::bigint / 100.0, $8::bigint / 100.0, $9, $10)
RETURNING ` + jobCols

	getJobSQL = `SELECT ` + jobCols + ` FROM core.jobs AS j WHERE j.ksid = $1 AND j.id = $2`

	// Absent fields are NULL parameters and keep their value; the budgets have explicit flags because
	// NULL is also their "open" value.
	updateJobSQL = `
UPDATE core.jobs AS j SET
	title       = COALESCE($4, j.title),
	description = COALESCE($5, j.description),
	skills      = COALESCE($6::text[], j.skills),
	budget_min  = CASE WHEN $7 THEN $8::bigint / 100.0 ELSE j.budget_min END,
	budget_max  = CASE WHEN $9 THEN $10::bigint / 100.0 ELSE j.budget_max END,
	currency    = COALESCE($11, j.currency),
	remote      = COALESCE($12, j.remote),
	status      = COALESCE($13, j.status)
WHERE j.ksid = $1 AND j.id = $2 AND j.owner_id = $3
RETURNING ` + jobCols

	ownJobSQL = `SELECT ` + jobCols + ` FROM core.jobs AS j WHERE j.ksid = $1 AND j.id = $2 AND j.owner_id = $3`

	deleteJobSQL = `DELETE FROM core.jobs WHERE ksid = $1 AND id = $2 AND owner_id = $3`

	// Newest first, keyset-paginated on (created_at, id); the first page passes a key after every row.
	// Served by the (ksid, owner_id, created_at DESC) index.
	listJobsSQL = `
SELECT ` + jobCols + ` FROM core.jobs AS j
WHERE j.ksid = $1 AND j.owner_id = $2 AND (NOT $3 OR j.status = 'open')
  AND (j.created_at, j.id) < ($4::timestamptz, $5::bytea)
ORDER BY j.created_at DESC, j.id DESC
LIMIT $6`
)

// scanJob reads jobCols, then extra.
func scanJob(row pgx.Row, extra ...any) (Job, error) {
	var (
		j          Job
		id, owner  []byte
		bmin, bmax *int64
	)
	dest := append([]any{&id, &owner, &j.Title, &j.Description, &j.Skills, &bmin, &bmax, &j.Currency, &j.Remote,
		&j.Status, &j.CreatedAt, &j.UpdatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Job{}, err
	}
	var err error
	if j.ID, err = shardkey.IDFromBytes(id); err != nil {
		return Job{}, fmt.Errorf("jobs: stored id: %w", err)
	}
	if j.OwnerID, err = shardkey.IDFromBytes(owner); err != nil {
		return Job{}, fmt.Errorf("jobs: stored owner_id: %w", err)
	}
	if bmin != nil {
		m := Money(*bmin)
		j.BudgetMin = &m
	}
	if bmax != nil {
		m := Money(*bmax)
		j.BudgetMax = &m
	}
	if j.Skills == nil {
		j.Skills = []string{}
	}
	j.CreatedAt, j.UpdatedAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	return j, nil
}

// rangeArgs are one shard's keyranges as the lo/hi arrays of the ownedBy filter.
type rangeArgs struct{ lo, hi [][]byte }

// unbounded sorts after every 8-byte ksid under bytea ordering: it stands for a keyrange's open end.
const unbounded = "\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// ownedRanges returns every shard's keyranges from the topology in force.
func (s *Service) ownedRanges() map[string]rangeArgs {
	tab := s.a.Topology()
	if tab == nil {
		return nil
	}
	out := map[string]rangeArgs{}
	for _, as := range tab.Topology().KeyRanges {
		ra := out[as.Shard]
		ra.lo = append(ra.lo, binary.BigEndian.AppendUint64(nil, as.Range.Start))
		if as.Range.End == 0 {
			ra.hi = append(ra.hi, []byte(unbounded))
		} else {
			ra.hi = append(ra.hi, binary.BigEndian.AppendUint64(nil, as.Range.End))
		}
		out[as.Shard] = ra
	}
	return out
}

// constraintError returns the PostgreSQL error's SQLSTATE and constraint, if err is one.
func constraintError(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}
