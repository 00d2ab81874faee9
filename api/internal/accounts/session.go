package accounts

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// startSession opens a new refresh-token family (one per login) in tx and returns the token bundle.
func (s *Service) startSession(ctx context.Context, tx pgx.Tx, u userRow) (tokenBundle, shardkey.ID, error) {
	fam, err := s.a.IDs.New(shardkey.KindTokenFamily, u.KSID)
	if err != nil {
		return tokenBundle{}, fam, err
	}
	now := s.now()
	if _, err := tx.Exec(ctx, insertFamilySQL,
		u.KSID.Bytes(), fam.Bytes(), u.ID.Bytes(), now); err != nil {
		return tokenBundle{}, fam, fmt.Errorf("accounts: new token family: %w", err)
	}
	b, err := s.continueSession(ctx, tx, u, fam, now)
	return b, fam, err
}

// continueSession issues the next refresh token of family fam in tx, and an access token that names
// the session (sid) and the login that started it (auth_time).
func (s *Service) continueSession(ctx context.Context, tx pgx.Tx, u userRow, fam shardkey.ID, loggedIn time.Time) (tokenBundle, error) {
	refresh, err := newRefreshToken(fam)
	if err != nil {
		return tokenBundle{}, err
	}
	now := s.now()
	if _, err := tx.Exec(ctx, insertRefreshTokenSQL,
		u.KSID.Bytes(), secretHash(refresh), fam.Bytes(), u.ID.Bytes(), now, now.Add(s.cfg.RefreshTTL)); err != nil {
		return tokenBundle{}, fmt.Errorf("accounts: new refresh token: %w", err)
	}
	access, _, err := s.cfg.Tokens.Issue(accesstoken.Subject{UserID: u.ID, KSID: u.KSID, Role: string(u.Role), Region: u.Region, AuthTime: loggedIn, Session: fam})
	if err != nil {
		return tokenBundle{}, fmt.Errorf("accounts: access token: %w", err)
	}
	return tokenBundle{
		User:         u.json(),
		AccessToken:  access,
		RefreshToken: refresh,
		TokenType:    "Bearer",
		ExpiresIn:    int64(s.cfg.Tokens.TTL() / time.Second),
	}, nil
}

// record writes an audit event through db (a transaction, to commit with the change it records).
func (s *Service) record(ctx context.Context, db audit.Execer, ksid shardkey.KeyspaceID, actor shardkey.ID, action, target string, m reqMeta, details map[string]any) error {
	id, err := s.a.IDs.New(shardkey.KindAudit, ksid)
	if err != nil {
		return err
	}
	return audit.Record(ctx, db, audit.Event{
		ID: id, KSID: ksid, ActorID: actor, Action: action, Target: target,
		IP: m.IP, UserAgent: m.UserAgent, Details: details, At: s.now(),
	})
}

// recordAlone writes an event that has no change to commit with (a failed login); losing it must not
// fail the request, so errors are only logged.
func (s *Service) recordAlone(ctx context.Context, db audit.Execer, ksid shardkey.KeyspaceID, actor shardkey.ID, action, target string, m reqMeta, details map[string]any) {
	if err := s.record(ctx, db, ksid, actor, action, target, m, details); err != nil {
		s.a.Log.Error("audit event not recorded", "action", action, "ksid", ksid.String(), "err", err)
	}
}

// revokeFamily ends a refresh-token family: none of its tokens rotates again.
func revokeFamily(ctx context.Context, tx pgx.Tx, ksid shardkey.KeyspaceID, fam shardkey.ID, now time.Time, reason string) error {
	_, err := tx.Exec(ctx, revokeFamilySQL, ksid.Bytes(), fam.Bytes(), now, reason)
	return err
}
