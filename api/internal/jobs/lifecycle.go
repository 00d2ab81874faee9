package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Closer is told, inside the transaction that makes the change, that a job stopped taking proposals:
// closed, completed or deleted. The hiring feature implements it (it closes the job's pending
// proposals and tells their authors); it runs on the job owner's shard.
type Closer interface {
	JobClosed(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, job shardkey.ID) error
}

// Watcher is told, inside the transaction that makes the change, that a job was created, changed or
// deleted. The matching engine implements it (it recomputes the job's vector through the outbox).
type Watcher interface {
	JobChanged(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, job shardkey.ID) error
}

// Hooks are the features the jobs feature tells about its changes; a nil one is not told.
type Hooks struct {
	Closer  Closer
	Watcher Watcher
}

// ErrNotOpen is returned by StartWork for a job that takes no more contracts (closed or completed).
var ErrNotOpen = errors.New("jobs: the job is not open")

// ErrNoJob is returned by StartWork and Read for a job that does not exist.
var ErrNoJob = errors.New("jobs: no such job")

// NotOpen is the public error for an action that needs an open job, on one that is status.
func NotOpen(status string) *apierror.Error {
	return &apierror.Error{Status: http.StatusConflict, Code: "job_not_open",
		Message: "the job is " + status + " and takes no proposals"}
}

// nextStatus is the status a job moves to when its owner asks for want (open, closed or completed)
// while it is cur, or the conflict that refuses it. Closing a job that has had a contract completes it.
func nextStatus(cur, want string) (string, error) {
	if cur == want {
		return cur, nil
	}
	switch {
	case cur == StatusOpen && want == StatusClosed, cur == StatusClosed && want == StatusOpen:
		return want, nil
	case cur == StatusInProgress && (want == StatusClosed || want == StatusCompleted):
		return StatusCompleted, nil
	case want == StatusCompleted:
		return "", apierror.Conflict("invalid_status_change", "only a job in progress (one with a contract) can be completed; close it instead")
	case cur == StatusInProgress:
		return "", apierror.Conflict("invalid_status_change", "a job in progress can only be completed (or closed, which completes it)")
	case cur == StatusCompleted:
		return "", apierror.Conflict("invalid_status_change", "a completed job cannot change status")
	}
	return "", apierror.Conflict("invalid_status_change", fmt.Sprintf("a %s job cannot become %s", cur, want))
}

// StartWork marks job, on the owner's shard of tx, as in progress because a contract starts on it:
// open → in_progress; in_progress stays. It holds the job's row for the rest of tx. ErrNotOpen for a
// closed or completed job, ErrNoJob for none; status is the job's status before.
func StartWork(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, job shardkey.ID) (status string, err error) {
	var ownerID []byte
	err = tx.QueryRow(ctx, lockJobSQL, owner.Bytes(), job.Bytes()).Scan(&ownerID, &status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", ErrNoJob
	case err != nil:
		return "", fmt.Errorf("jobs: locking %s: %w", job, err)
	case status == StatusClosed || status == StatusCompleted:
		return status, ErrNotOpen
	case status == StatusOpen:
		if _, err := tx.Exec(ctx, setStatusSQL, owner.Bytes(), job.Bytes(), StatusInProgress); err != nil {
			return status, fmt.Errorf("jobs: starting work on %s: %w", job, err)
		}
	}
	return status, nil
}

// Lock holds job's row, on the owner's shard of tx, for the rest of tx and returns its owner and
// status: a change that depends on the job staying as it is (a proposal's reference row arriving)
// then serialises with the job's own changes. ErrNoJob for none.
func Lock(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, job shardkey.ID) (shardkey.ID, string, error) {
	var (
		raw    []byte
		status string
	)
	err := tx.QueryRow(ctx, lockJobSQL, owner.Bytes(), job.Bytes()).Scan(&raw, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return shardkey.ID{}, "", ErrNoJob
	}
	if err != nil {
		return shardkey.ID{}, "", fmt.Errorf("jobs: locking %s: %w", job, err)
	}
	id, err := shardkey.IDFromBytes(raw)
	return id, status, err
}

// Querier is a pool or a transaction of a shard.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Read returns job from the owner's shard q (ksid is the owner's ksid now); ErrNoJob for none.
func Read(ctx context.Context, q Querier, owner shardkey.KeyspaceID, job shardkey.ID) (Job, error) {
	j, err := scanJob(q.QueryRow(ctx, getJobSQL, owner.Bytes(), job.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrNoJob
	}
	if err != nil {
		return Job{}, fmt.Errorf("jobs: reading %s: %w", job, err)
	}
	return j, nil
}

// ParseMoney reads an amount with at most two decimals (a JSON number's text) as cents.
func ParseMoney(s string) (Money, error) {
	c, err := parseCents(s)
	return Money(c), err
}
