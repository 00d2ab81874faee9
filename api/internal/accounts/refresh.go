package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// handleRefresh rotates a refresh token: the presented token is marked used and the next one of its
// family is issued with a new access token. A token presented a second time means that two parties
// hold it (one of them a thief); the whole family is revoked, so both must log in again.
func (s *Service) handleRefresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	routed, err := s.a.WriteShard(ctx, req.family.KeyspaceID())
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	var (
		b     tokenBundle
		fail  error // the answer when the transaction commits a refusal
		reuse bool
	)
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		var (
			famB, userB []byte
			expires     time.Time
			used        *time.Time
			revoked     *time.Time
		)
		err := tx.QueryRow(ctx, `
			SELECT t.family_id, t.user_id, t.expires_at, t.used_at, f.revoked_at
			FROM auth.refresh_tokens t
			JOIN auth.refresh_token_families f ON f.ksid = t.ksid AND f.id = t.family_id
			WHERE t.ksid = $1 AND t.token_hash = $2
			FOR UPDATE OF t, f`, ksid.Bytes(), secretHash(req.RefreshToken)).Scan(&famB, &userB, &expires, &used, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			fail = errBadRefresh
			return nil
		}
		if err != nil {
			return err
		}
		fam, err1 := shardkey.IDFromBytes(famB)
		userID, err2 := shardkey.IDFromBytes(userB)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		now := s.now()
		switch {
		case fam != req.family:
			fail = errBadRefresh
			return nil
		case revoked != nil:
			fail = errBadRefresh
			return nil
		case used != nil:
			reuse, fail = true, errBadRefresh.WithCause(errors.New("refresh token reuse"))
			if err := revokeFamily(ctx, tx, ksid, fam, now, "refresh token reuse"); err != nil {
				return err
			}
			return s.record(ctx, tx, ksid, shardkey.ID{}, audit.ActionRefreshTokenReuse, fam.String(), s.metaOf(r),
				map[string]any{"used_at": used.UTC().Format(time.RFC3339Nano)})
		case !now.Before(expires):
			fail = errBadRefresh
			return nil
		}
		u, err := loadUser(ctx, tx, ksid, userID, "FOR SHARE")
		if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
			fail = errBadRefresh
			return revokeFamily(ctx, tx, ksid, fam, now, "user deleted")
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE auth.refresh_tokens SET used_at = GREATEST(issued_at, $3) WHERE ksid = $1 AND token_hash = $2`,
			ksid.Bytes(), secretHash(req.RefreshToken), now); err != nil {
			return err
		}
		b, err = s.continueSession(ctx, tx, u, fam)
		return err
	})
	if err != nil {
		return fmt.Errorf("accounts: refresh: %w", err)
	}
	if fail != nil {
		if reuse {
			s.a.Log.Warn("refresh token reuse: family revoked", "family", req.family.String())
		}
		return fail
	}
	rest.WriteJSON(w, http.StatusOK, b)
	return nil
}

func revokeFamily(ctx context.Context, tx pgx.Tx, ksid shardkey.KeyspaceID, fam shardkey.ID, now time.Time, reason string) error {
	_, err := tx.Exec(ctx, `
		UPDATE auth.refresh_token_families SET revoked_at = GREATEST(created_at, $3), revoked_reason = $4
		WHERE ksid = $1 AND id = $2 AND revoked_at IS NULL`, ksid.Bytes(), fam.Bytes(), now, reason)
	return err
}

// handleLogout revokes the family of the presented refresh token. It answers 204 whether or not
// there was anything to revoke, so logging out twice is harmless.
func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	routed, err := s.a.WriteShard(ctx, req.family.KeyspaceID())
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		// Only the holder of a real token of the family may end it: the family ID alone is not enough.
		var userB []byte
		err := tx.QueryRow(ctx, `
			UPDATE auth.refresh_token_families f SET revoked_at = GREATEST(f.created_at, $4), revoked_reason = 'logout'
			WHERE f.ksid = $1 AND f.id = $3 AND f.revoked_at IS NULL
			  AND EXISTS (SELECT 1 FROM auth.refresh_tokens t WHERE t.ksid = $1 AND t.token_hash = $2 AND t.family_id = $3)
			RETURNING f.user_id`, ksid.Bytes(), secretHash(req.RefreshToken), req.family.Bytes(), s.now()).Scan(&userB)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		userID, err := shardkey.IDFromBytes(userB)
		if err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, userID, audit.ActionLogout, req.family.String(), s.metaOf(r), nil)
	})
	if err != nil {
		return fmt.Errorf("accounts: logout: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
