package jobs

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// jobCols are the columns of a Job, in scanJob's order, for queries that call core.jobs "j". Budgets are
// read in cents so that no float ever holds money.
const jobCols = `j.id, j.owner_id, j.title, j.description, j.skills,
	(j.budget_min * 100)::bigint AS budget_min_cents, (j.budget_max * 100)::bigint AS budget_max_cents,
	j.currency, j.remote, j.status, j.created_at, j.updated_at, j.country`

const (
	insertJobSQL = `
INSERT INTO core.jobs AS j (ksid, id, owner_id, title, description, skills, budget_min, budget_max, currency, remote, country)
VALUES ($1, $2, $3, $4, $5, $6, $7::bigint / 100.0, $8::bigint / 100.0, $9, $10, $11)
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
	status      = COALESCE($13, j.status),
	country     = CASE WHEN $14 THEN $15 ELSE j.country END
WHERE j.ksid = $1 AND j.id = $2 AND j.owner_id = $3
RETURNING ` + jobCols

	ownJobSQL = `SELECT ` + jobCols + ` FROM core.jobs AS j WHERE j.ksid = $1 AND j.id = $2 AND j.owner_id = $3`

	deleteJobSQL = `DELETE FROM core.jobs WHERE ksid = $1 AND id = $2 AND owner_id = $3`

	// lockJobSQL reads a job's owner and status and holds the row for the transaction's status change.
	lockJobSQL = `SELECT owner_id, status FROM core.jobs WHERE ksid = $1 AND id = $2 FOR UPDATE`

	setStatusSQL = `UPDATE core.jobs SET status = $3 WHERE ksid = $1 AND id = $2`

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
		&j.Status, &j.CreatedAt, &j.UpdatedAt, &j.Country}, extra...)
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
type rangeArgs = shardpool.Bounds

// unbounded sorts after every 8-byte ksid under bytea ordering: it stands for a keyrange's open end.
const unbounded = shardpool.Unbounded

// ownedRanges returns every shard's keyranges in tab (shardpool.OwnedBounds).
func ownedRanges(tab *topology.Table) map[string]rangeArgs { return shardpool.OwnedBounds(tab) }

// constraintError returns the PostgreSQL error's SQLSTATE and constraint, if err is one.
func constraintError(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

// Each shard ranks its matches and returns the best limit+1 after the cursor. The rank is computed in a
// subquery so that the keyset condition can compare it. Title words weigh A, description words B and
// skills C in the generated search column, so with ts_rank a title match outranks a description match.
// The EXISTS keeps each shard to the keyranges the topology gives it ($lo, $hi: parallel arrays of
// bounds): a shard can hold rows of a keyrange it does not own — the copy a move is filling, or the
// source's rows until cleanup — and without it a search would count them twice.
const (
	searchTextSQL = `
SELECT * FROM (
	SELECT ` + jobCols + `, ts_rank(j.search, q.query) AS rank
	FROM core.jobs AS j, websearch_to_tsquery('english', $1) AS q(query)
	WHERE j.search @@ q.query
	  AND j.status = 'open'
	  AND ($2::text[] IS NULL OR j.skills && $2::text[])
	  AND EXISTS (SELECT 1 FROM unnest($3::bytea[], $4::bytea[]) AS r(lo, hi) WHERE j.ksid >= r.lo AND j.ksid < r.hi)
) AS m
WHERE (m.rank, m.id) < ($5::real, $6::bytea)
ORDER BY m.rank DESC, m.id DESC
LIMIT $7`

	// Without words, the rank is how many of the wanted skills a job lists; ties go to the newer job,
	// which is the larger ID (IDs start with their creation time).
	searchSkillsSQL = `
SELECT * FROM (
	SELECT ` + jobCols + `,
	       (SELECT count(DISTINCT s) FROM unnest(j.skills) AS s WHERE s = ANY($1::text[]))::real AS rank
	FROM core.jobs AS j
	WHERE j.skills && $1::text[]
	  AND j.status = 'open'
	  AND EXISTS (SELECT 1 FROM unnest($2::bytea[], $3::bytea[]) AS r(lo, hi) WHERE j.ksid >= r.lo AND j.ksid < r.hi)
) AS m
WHERE (m.rank, m.id) < ($4::real, $5::bytea)
ORDER BY m.rank DESC, m.id DESC
LIMIT $6`
)

// Job statuses: open → in_progress with its first contract (hiring) → completed when its owner closes
// it; closed when closed without a contract. Only an open job takes proposals.
const (
	StatusOpen       = "open"
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
	StatusClosed     = "closed"
)

// Job is a job as the API shows it.
type Job struct {
	ID          shardkey.ID `json:"id"`
	OwnerID     shardkey.ID `json:"owner_id"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Skills      []string    `json:"skills"`
	// BudgetMin and BudgetMax are null when that side of the budget is open.
	BudgetMin *Money `json:"budget_min"`
	BudgetMax *Money `json:"budget_max"`
	Currency  string `json:"currency"`
	Remote    bool   `json:"remote"`
	// Country is where an on-site job is done (ISO 3166-1 alpha-2), null when unknown.
	Country   *string   `json:"country"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Money is an amount in hundredths (cents) of its currency: exact, unlike a float, and the same scale
// as the numeric(12,2) column. In JSON it is a plain number ("1500.5").
type Money int64

// MarshalJSON writes the amount as a JSON number with at most two decimals.
func (m Money) MarshalJSON() ([]byte, error) {
	v := int64(m)
	neg := v < 0
	if neg {
		v = -v
	}
	b := strconv.AppendInt(nil, v/100, 10)
	if c := v % 100; c != 0 {
		b = append(b, '.', byte('0'+c/10))
		if c%10 != 0 {
			b = append(b, byte('0'+c%10))
		}
	}
	if neg {
		b = append([]byte{'-'}, b...)
	}
	return b, nil
}

// UnmarshalJSON reads a JSON number with at most two decimals (peers' answers).
func (m *Money) UnmarshalJSON(b []byte) error {
	c, err := parseCents(string(b))
	if err != nil {
		return err
	}
	*m = Money(c)
	return nil
}
