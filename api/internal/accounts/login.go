package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// loginLocal checks a password for userID, whose data is in this region, and opens a session.
func (s *Service) loginLocal(ctx context.Context, userID shardkey.ID, email, password string, h directory.Hash, m reqMeta) (tokenBundle, error) {
	routed, err := s.a.WriteShard(ctx, userID.KeyspaceID())
	if err != nil {
		return tokenBundle{}, err
	}
	if err := s.throttled(ctx, m.IP, h); err != nil {
		return tokenBundle{}, err
	}
	ksid := routed.Route.KeyspaceID
	var phc *string
	u, err := scanUser(routed.Pool.QueryRow(ctx, userWithPasswordSQL, ksid.Bytes(), userID.Bytes()), ksid, &phc)
	switch {
	case errors.Is(err, errNoUser):
	case err != nil:
		return tokenBundle{}, err
	case u.Deleted || u.EmailNorm != email:
		// A deleted user, or (never in practice) an HMAC collision: nobody to log in.
		phc = nil
	}
	stored := ""
	if phc != nil {
		stored = *phc
	}
	ok, stale, err := s.pw.check(ctx, password, stored)
	if err != nil {
		return tokenBundle{}, err
	}
	if !ok {
		s.failed(ctx, m.IP, h)
		if stored != "" {
			s.recordAlone(ctx, routed.Pool, ksid, shardkey.ID{}, audit.ActionLoginFailed, u.ID.String(), m, map[string]any{"reason": "wrong_password"})
		}
		return tokenBundle{}, errInvalidCredentials
	}
	s.succeeded(ctx, h)
	rehash := ""
	if stale {
		// The costs were raised since this hash was made: store one with today's costs.
		if rehash, err = s.pw.hash(ctx, password); err != nil {
			return tokenBundle{}, err
		}
	}
	var b tokenBundle
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		if rehash != "" {
			if _, err := tx.Exec(ctx, rehashPasswordSQL,
				ksid.Bytes(), u.ID.Bytes(), rehash, stored); err != nil {
				return err
			}
		}
		var fam shardkey.ID
		var err error
		if b, fam, err = s.startSession(ctx, tx, u); err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, u.ID, audit.ActionLogin, fam.String(), m, map[string]any{"method": "password", "rehashed": rehash != ""})
	})
	if err != nil {
		return tokenBundle{}, fmt.Errorf("accounts: login: %w", err)
	}
	return b, nil
}
