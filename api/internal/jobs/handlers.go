package jobs

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// writeFailure turns a database error of a write into the public error: the one CHECK a valid request
// can still break (a patched budget bound against the stored other bound) is a field error.
func writeFailure(err error) error {
	switch code, constraint := constraintError(err); {
	case code == "23514" && constraint == "jobs_budget_ordered":
		return apierror.Invalid(map[string]string{"budget_min": "must not be greater than budget_max"}).WithCause(err)
	case code == "23514":
		return apierror.BadRequest("the job breaks a limit of its fields").WithCause(err)
	case code == "23503":
		// The owner row is gone (an erased account whose token has not expired yet).
		return apierror.Unauthenticated("the account no longer exists").WithCause(err)
	}
	return err
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	if err := feature.Caller(r).Can(authn.CapPostJob); err != nil {
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
	caller := feature.Caller(r)
	shard, err := s.a.WriteShard(r.Context(), caller.KSID)
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	id, err := s.a.IDs.New(shardkey.KindJob, ksid)
	if err != nil {
		return err
	}
	var job Job
	err = pgx.BeginFunc(r.Context(), shard.Pool, func(tx pgx.Tx) error {
		var err error
		job, err = scanJob(tx.QueryRow(r.Context(), insertJobSQL, ksid.Bytes(), id.Bytes(), caller.UserID.Bytes(),
			*in.Title, *in.Description, in.Skills, in.BudgetMin, in.BudgetMax, *in.Currency, *in.Remote, in.Country))
		if err != nil {
			return writeFailure(err)
		}
		return s.changed(r.Context(), tx, ksid, id)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/jobs/"+job.ID.String())
	rest.WriteJSON(w, http.StatusCreated, job)
	return nil
}

// changed tells the watcher, in tx, that job changed.
func (s *Service) changed(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, job shardkey.ID) error {
	if s.hooks.Watcher == nil {
		return nil
	}
	return s.hooks.Watcher.JobChanged(ctx, tx, owner, job)
}

// pathJobID reads {id}. A malformed ID, or another kind's, names no job: 404, like an unknown one.
func pathJobID(r *http.Request) (shardkey.ID, error) {
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindJob)
	if err != nil {
		return id, apierror.NotFound("job").WithCause(err)
	}
	return id, nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathJobID(r)
	if err != nil {
		return err
	}
	shard, err := s.a.ReadShard(r.Context(), id.KeyspaceID())
	if err != nil {
		return err
	}
	job, err := scanJob(shard.Pool.QueryRow(r.Context(), getJobSQL, shard.Route.KeyspaceID.Bytes(), id.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) {
		return apierror.NotFound("job")
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, job)
	return nil
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	id, err := pathJobID(r)
	if err != nil {
		return err
	}
	var req patchRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	in, bad := req.normalize(s.san)
	if len(bad) > 0 {
		return apierror.Invalid(bad)
	}
	caller := feature.Caller(r)
	shard, err := s.a.WriteShard(r.Context(), id.KeyspaceID())
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	if in.empty() {
		// Nothing to change: answer like a read, but only to the owner.
		job, err := scanJob(shard.Pool.QueryRow(r.Context(), ownJobSQL, ksid.Bytes(), id.Bytes(), caller.UserID.Bytes()))
		if errors.Is(err, pgx.ErrNoRows) {
			return apierror.NotFound("job")
		}
		if err != nil {
			return err
		}
		rest.WriteJSON(w, http.StatusOK, job)
		return nil
	}
	var job Job
	err = pgx.BeginFunc(r.Context(), shard.Pool, func(tx pgx.Tx) error {
		status := in.Status
		var closed bool
		if status != nil {
			// The status moves by the lifecycle's rules, from the status the row holds now.
			var owner []byte
			var cur string
			err := tx.QueryRow(r.Context(), lockJobSQL, ksid.Bytes(), id.Bytes()).Scan(&owner, &cur)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && !bytes.Equal(owner, caller.UserID.Bytes())) {
				// Unknown, or someone else's: the same answer, so existence is not disclosed.
				return apierror.NotFound("job")
			}
			if err != nil {
				return err
			}
			next, err := nextStatus(cur, *status)
			if err != nil {
				return err
			}
			status, closed = &next, (cur == StatusOpen || cur == StatusInProgress) && next != cur
		}
		job, err = scanJob(tx.QueryRow(r.Context(), updateJobSQL, ksid.Bytes(), id.Bytes(), caller.UserID.Bytes(),
			in.Title, in.Description, in.Skills, in.BudgetMinSet, in.BudgetMin, in.BudgetMaxSet, in.BudgetMax,
			in.Currency, in.Remote, status, in.CountrySet, in.Country))
		if errors.Is(err, pgx.ErrNoRows) {
			return apierror.NotFound("job")
		}
		if err != nil {
			return writeFailure(err)
		}
		if closed && s.hooks.Closer != nil {
			if err := s.hooks.Closer.JobClosed(r.Context(), tx, ksid, id); err != nil {
				return err
			}
		}
		return s.changed(r.Context(), tx, ksid, id)
	})
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, job)
	return nil
}

func (s *Service) remove(w http.ResponseWriter, r *http.Request) error {
	id, err := pathJobID(r)
	if err != nil {
		return err
	}
	caller := feature.Caller(r)
	shard, err := s.a.WriteShard(r.Context(), id.KeyspaceID())
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	err = pgx.BeginFunc(r.Context(), shard.Pool, func(tx pgx.Tx) error {
		var owner []byte
		var cur string
		err := tx.QueryRow(r.Context(), lockJobSQL, ksid.Bytes(), id.Bytes()).Scan(&owner, &cur)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !bytes.Equal(owner, caller.UserID.Bytes())) {
			return apierror.NotFound("job")
		}
		if err != nil {
			return err
		}
		// Its pending proposals are closed first (their reference rows go with the job).
		if s.hooks.Closer != nil && (cur == StatusOpen || cur == StatusInProgress) {
			if err := s.hooks.Closer.JobClosed(r.Context(), tx, ksid, id); err != nil {
				return err
			}
		}
		if err := s.changed(r.Context(), tx, ksid, id); err != nil {
			return err
		}
		tag, err := tx.Exec(r.Context(), deleteJobSQL, ksid.Bytes(), id.Bytes(), caller.UserID.Bytes())
		if code, _ := constraintError(err); code == "23503" {
			return apierror.Conflict("job_has_contracts", "a job with contracts is kept as their record; close it instead").WithCause(err)
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return apierror.NotFound("job")
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listCursor is the position after the last job of a listing page.
type listCursor struct {
	V  int         `json:"v"`
	T  time.Time   `json:"t"`
	ID shardkey.ID `json:"id"`
	// H binds the cursor to the listing it came from (owner and visibility).
	H string `json:"h"`
}

// fingerprint is a short hash of what a cursor belongs to, so that a cursor handed to another query is
// refused instead of silently skipping or repeating rows.
func fingerprint(parts ...string) string {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// firstListKey sorts after every row: the first page's "after" position.
func firstListKey() (time.Time, []byte) {
	return time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), []byte(unbounded)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	caller := feature.Caller(r)
	q := r.URL.Query()
	limit, err := rest.Limit(r)
	if err != nil {
		return err
	}
	owner, openOnly := caller.UserID, false
	if v := q.Get("owner_id"); v != "" {
		id, err := shardkey.ParseIDOfKind(v, shardkey.KindUser)
		if err != nil {
			return apierror.Invalid(map[string]string{"owner_id": "is not a user ID"}).WithCause(err)
		}
		// Someone else's listing shows only what is open; one's own shows everything.
		if id != caller.UserID {
			owner, openOnly = id, true
		}
	}
	fp := fingerprint("list", owner.String(), strconv.FormatBool(openOnly))
	afterT, afterID := firstListKey()
	if c := q.Get("cursor"); c != "" {
		var cur listCursor
		if err := rest.DecodeCursor(c, &cur); err != nil {
			return err
		}
		if cur.V != 1 || cur.H != fp || cur.ID.Kind() != shardkey.KindJob {
			return apierror.Invalid(map[string]string{"cursor": "is not a cursor of this listing"})
		}
		afterT, afterID = cur.T, cur.ID.Bytes()
	}
	ksid := owner.KeyspaceID()
	if owner == caller.UserID {
		ksid = caller.KSID // the caller's ksid now, after any relocation
	}
	shard, err := s.a.ReadShard(r.Context(), ksid)
	if err != nil {
		return err
	}
	rows, err := shard.Pool.Query(r.Context(), listJobsSQL, shard.Route.KeyspaceID.Bytes(), owner.Bytes(), openOnly,
		afterT, afterID, limit+1)
	if err != nil {
		return err
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Job, error) { return scanJob(row) })
	if err != nil {
		return err
	}
	page := rest.Page[Job]{Items: items}
	if len(items) > limit {
		last := items[limit-1]
		page.Items = items[:limit]
		page.NextCursor = rest.EncodeCursor(listCursor{V: 1, T: last.CreatedAt, ID: last.ID, H: fp})
	}
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (s *Service) search(w http.ResponseWriter, r *http.Request) error {
	p, err := parseSearch(r.URL.Query())
	if err != nil {
		return err
	}
	var pg SearchPage
	if p.Global {
		pg, err = s.searchGlobal(r.Context(), p)
	} else {
		pg, err = s.searchLocal(r.Context(), p)
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, pg)
	return nil
}

// searchInternal serves another region's node its part of a global search.
func (s *Service) searchInternal(w http.ResponseWriter, r *http.Request) error {
	p, err := parseSearch(r.URL.Query())
	if err != nil {
		return err
	}
	pg, err := s.searchLocal(r.Context(), p)
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, pg)
	return nil
}
