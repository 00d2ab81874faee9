package reviews

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func invalid(field, problem string) error {
	return apierror.Invalid(map[string]string{field: problem})
}

// reviewID reads the {id} path variable. A malformed ID names no review: 404, like an unknown one.
func reviewID(r *http.Request) (shardkey.ID, error) {
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindReview)
	if err != nil {
		return shardkey.ID{}, apierror.NotFound("review").WithCause(err)
	}
	return id, nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	id, err := reviewID(r)
	if err != nil {
		return err
	}
	shard, err := s.a.ReadShard(r.Context(), id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("review").WithCause(err)
	}
	if err != nil {
		return err
	}
	rv, err := scanReview(shard.Pool.QueryRow(r.Context(), getReviewSQL,
		shard.Route.KeyspaceID.Bytes(), id.Bytes()))
	if errors.Is(err, pgx.ErrNoRows) {
		return apierror.NotFound("review")
	}
	if err != nil {
		return fmt.Errorf("reviews: read: %w", err)
	}
	rest.WriteJSON(w, http.StatusOK, rv)
	return nil
}

func (s *Service) patch(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	id, err := reviewID(r)
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
	shard, err := s.a.WriteShard(ctx, id.KeyspaceID())
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	var row pgx.Row
	if in.empty() {
		// Nothing to change: still only the author may see the answer, and updated_at stays.
		row = shard.Pool.QueryRow(ctx, ownReviewSQL, ksid.Bytes(), id.Bytes(), caller.UserID.Bytes())
	} else {
		var rating *int16
		if in.rating != nil {
			v := int16(*in.rating)
			rating = &v
		}
		row = shard.Pool.QueryRow(ctx, updateReviewSQL, ksid.Bytes(), id.Bytes(), caller.UserID.Bytes(), rating, in.comment)
	}
	rv, err := scanReview(row)
	if errors.Is(err, pgx.ErrNoRows) {
		// Someone else's review and no review at all look the same.
		return apierror.NotFound("review")
	}
	if err != nil {
		return fmt.Errorf("reviews: update: %w", err)
	}
	if in.rating != nil {
		s.cache.invalidate(ctx, rv.RevieweeID)
	}
	rest.WriteJSON(w, http.StatusOK, rv)
	return nil
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	id, err := reviewID(r)
	if err != nil {
		return err
	}
	shard, err := s.a.WriteShard(ctx, id.KeyspaceID())
	if err != nil {
		return err
	}
	var reviewee []byte
	err = shard.Pool.QueryRow(ctx, deleteReviewSQL,
		shard.Route.KeyspaceID.Bytes(), id.Bytes(), caller.UserID.Bytes()).Scan(&reviewee)
	if errors.Is(err, pgx.ErrNoRows) {
		return apierror.NotFound("review")
	}
	if err != nil {
		return fmt.Errorf("reviews: delete: %w", err)
	}
	user, err := shardkey.IDFromBytes(reviewee)
	if err != nil {
		return fmt.Errorf("reviews: stored reviewee: %w", err)
	}
	s.cache.invalidate(ctx, user)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listCursor is the position after the last review of a page. It names the reviewee so that a cursor
// of one list cannot be replayed against another.
type listCursor struct {
	User      string    `json:"u"`
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"i"`
}

func userParam(r *http.Request) (shardkey.ID, error) {
	s := r.URL.Query().Get("user_id")
	id, err := parseIDField(s, shardkey.KindUser)
	if err != nil {
		return shardkey.ID{}, invalid("user_id", err.Error())
	}
	return id, nil
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	user, err := userParam(r)
	if err != nil {
		return err
	}
	limit, err := rest.Limit(r)
	if err != nil {
		return err
	}
	var (
		after   *listCursor
		afterID shardkey.ID
	)
	if c := r.URL.Query().Get("cursor"); c != "" {
		var cur listCursor
		if err := rest.DecodeCursor(c, &cur); err != nil {
			return err
		}
		if afterID, err = shardkey.ParseIDOfKind(cur.ID, shardkey.KindReview); err != nil || cur.User != user.String() {
			return invalid("cursor", "is not a cursor of this list")
		}
		after = &cur
	}
	shard, err := s.a.ReadShard(ctx, user.KeyspaceID())
	if err != nil {
		if errors.Is(err, topology.ErrNoShard) {
			return apierror.NotFound("user").WithCause(err)
		}
		return err
	}
	ksid := shard.Route.KeyspaceID
	var exists bool
	if err := shard.Pool.QueryRow(ctx, userExistsSQL,
		ksid.Bytes(), user.Bytes()).Scan(&exists); err != nil {
		return fmt.Errorf("reviews: reading user: %w", err)
	}
	if !exists {
		return apierror.NotFound("user")
	}
	var rows pgx.Rows
	if after == nil {
		rows, err = shard.Pool.Query(ctx, listFirstSQL, ksid.Bytes(), user.Bytes(), limit+1)
	} else {
		rows, err = shard.Pool.Query(ctx, listAfterSQL, ksid.Bytes(), user.Bytes(), after.CreatedAt, afterID.Bytes(), limit+1)
	}
	if err != nil {
		return fmt.Errorf("reviews: list: %w", err)
	}
	defer rows.Close()
	page := rest.Page[Review]{Items: make([]Review, 0, limit)}
	for rows.Next() {
		rv, err := scanReview(rows)
		if err != nil {
			return fmt.Errorf("reviews: list: %w", err)
		}
		page.Items = append(page.Items, rv)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reviews: list: %w", err)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.NextCursor = rest.EncodeCursor(listCursor{User: user.String(), CreatedAt: last.CreatedAt, ID: last.ID.String()})
	}
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (s *Service) getStats(w http.ResponseWriter, r *http.Request) error {
	user, err := userParam(r)
	if err != nil {
		return err
	}
	st, err := s.stats(r.Context(), user)
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("user").WithCause(err)
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, st)
	return nil
}
