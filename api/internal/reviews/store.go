package reviews

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// The statements of the review routes and the stats. A review lives on the reviewee's shard, so every
// one is keyed by the reviewee's ksid.
const (
	// A review written through the API is bound to a completed contract: verified. The EXISTS makes
	// "the reviewee exists and is not deleted" part of the insert itself.
	insertReviewSQL = `
		INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, contract_id, status, rating, comment)
		SELECT $1, $2, $3, $4, $5, $6, 'verified', $7, $8
		WHERE EXISTS (SELECT 1 FROM auth.users WHERE ksid = $1 AND id = $4 AND deleted_at IS NULL)
		RETURNING ` + reviewColumns

	getReviewSQL = `SELECT ` + reviewColumns + ` FROM core.reviews WHERE ksid = $1 AND id = $2`

	ownReviewSQL = `SELECT ` + reviewColumns + ` FROM core.reviews
			WHERE ksid = $1 AND id = $2 AND reviewer_id = $3`

	updateReviewSQL = `UPDATE core.reviews
			SET rating = COALESCE($4::smallint, rating), comment = COALESCE($5::text, comment)
			WHERE ksid = $1 AND id = $2 AND reviewer_id = $3
			RETURNING ` + reviewColumns

	deleteReviewSQL = `DELETE FROM core.reviews WHERE ksid = $1 AND id = $2 AND reviewer_id = $3 RETURNING reviewee_id`

	userExistsSQL = `SELECT EXISTS (SELECT 1 FROM auth.users WHERE ksid = $1 AND id = $2 AND deleted_at IS NULL)`

	// Newest first; (created_at, id) is unique, so the keyset never skips or repeats a review.
	listFirstSQL = `SELECT ` + reviewColumns + ` FROM core.reviews
			WHERE ksid = $1 AND reviewee_id = $2
			ORDER BY created_at DESC, id DESC LIMIT $3`
	listAfterSQL = `SELECT ` + reviewColumns + ` FROM core.reviews
			WHERE ksid = $1 AND reviewee_id = $2 AND (created_at, id) < ($3, $4)
			ORDER BY created_at DESC, id DESC LIMIT $5`

	// The join answers "does the user exist" in the same round trip (see countRatings). Only verified
	// reviews (of completed contracts) count; reviews_verified_reviewee_idx serves it.
	countRatingsSQL = `
		SELECT r.rating, count(r.id)
		FROM auth.users u
		LEFT JOIN core.reviews r ON r.ksid = u.ksid AND r.reviewee_id = u.id AND r.status = 'verified'
		WHERE u.ksid = $1 AND u.id = $2 AND u.deleted_at IS NULL
		GROUP BY r.rating`
)

// Review statuses (core.reviews.status).
const (
	// StatusVerified: bound to a completed contract; counted in stats.
	StatusVerified = "verified"
	// StatusUnverified: written before reviews needed a contract; listed, never counted.
	StatusUnverified = "unverified"
)

// Review is a review as the API shows it.
type Review struct {
	ID shardkey.ID `json:"id"`
	// ContractID is the contract the review is about; nil (null) for an unverified review.
	ContractID *shardkey.ID `json:"contract_id"`
	Status     string       `json:"status"`
	JobID      shardkey.ID  `json:"job_id"`
	ReviewerID shardkey.ID  `json:"reviewer_id"`
	RevieweeID shardkey.ID  `json:"reviewee_id"`
	Rating     int          `json:"rating"`
	Comment    string       `json:"comment"`
	CreatedAt  time.Time    `json:"created_at"`
	UpdatedAt  time.Time    `json:"updated_at"`
}

const reviewColumns = `id, contract_id, status, job_id, reviewer_id, reviewee_id, rating, comment, created_at, updated_at`

func scanReview(row pgx.Row) (Review, error) {
	var (
		rv                          Review
		id, contract, job, from, to []byte
		rating                      int16
		created, updated            time.Time
	)
	if err := row.Scan(&id, &contract, &rv.Status, &job, &from, &to, &rating, &rv.Comment, &created, &updated); err != nil {
		return Review{}, err
	}
	var err error
	if contract != nil {
		c, err := shardkey.IDFromBytes(contract)
		if err != nil {
			return Review{}, fmt.Errorf("reviews: stored contract ID: %w", err)
		}
		rv.ContractID = &c
	}
	for _, f := range []struct {
		dst *shardkey.ID
		b   []byte
	}{{&rv.ID, id}, {&rv.JobID, job}, {&rv.ReviewerID, from}, {&rv.RevieweeID, to}} {
		if *f.dst, err = shardkey.IDFromBytes(f.b); err != nil {
			return Review{}, fmt.Errorf("reviews: stored ID: %w", err)
		}
	}
	rv.Rating = int(rating)
	rv.CreatedAt, rv.UpdatedAt = created.UTC(), updated.UTC()
	return rv, nil
}

// oneReviewPerContract is the constraint that allows one review per party per contract (00009).
const oneReviewPerContract = "reviews_one_per_contract"

// pgConstraint returns the constraint a PostgreSQL error names ("" for none or any other error).
func pgConstraint(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName
	}
	return ""
}

// pgCode returns the SQLSTATE of a PostgreSQL error ("" for any other error).
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// countRatings reads the distribution from the reviewee's shard. The join answers "does the user
// exist" in the same round trip: no row at all means no such user; one row with a NULL rating means
// a user without reviews.
func countRatings(ctx context.Context, q querier, ksid shardkey.KeyspaceID, user shardkey.ID) (distribution, error) {
	rows, err := q.Query(ctx, countRatingsSQL, ksid.Bytes(), user.Bytes())
	if err != nil {
		return distribution{}, fmt.Errorf("reviews: counting ratings: %w", err)
	}
	defer rows.Close()
	var (
		d      distribution
		found  bool
		rating *int16
		n      int
	)
	for rows.Next() {
		if err := rows.Scan(&rating, &n); err != nil {
			return d, fmt.Errorf("reviews: counting ratings: %w", err)
		}
		found = true
		if rating != nil && *rating >= MinRating && *rating <= MaxRating {
			d[*rating-1] = n
		}
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("reviews: counting ratings: %w", err)
	}
	if !found {
		return d, ErrUnknownUser
	}
	return d, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
