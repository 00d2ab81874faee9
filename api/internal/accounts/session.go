package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/revocation"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
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

// continueSession issues the next refresh token of family fam (opened at started, the login) in tx,
// and an access token that names the session (sid) and the login (auth_time). The refresh token
// expires RefreshTTL from now, but never after the session's absolute end, SessionMaxAge after the
// login.
func (s *Service) continueSession(ctx context.Context, tx pgx.Tx, u userRow, fam shardkey.ID, started time.Time) (tokenBundle, error) {
	refresh, err := newRefreshToken(fam)
	if err != nil {
		return tokenBundle{}, err
	}
	now := s.now()
	expires := now.Add(s.cfg.RefreshTTL)
	if end := started.Add(s.cfg.SessionMaxAge); end.Before(expires) {
		expires = end
	}
	if !expires.After(now) {
		return tokenBundle{}, errSessionOver
	}
	if _, err := tx.Exec(ctx, insertRefreshTokenSQL,
		u.KSID.Bytes(), secretHash(refresh), fam.Bytes(), u.ID.Bytes(), now, expires); err != nil {
		return tokenBundle{}, fmt.Errorf("accounts: new refresh token: %w", err)
	}
	access, _, err := s.cfg.Tokens.Issue(accesstoken.Subject{UserID: u.ID, KSID: u.KSID, Role: string(u.Role), Region: u.Region,
		EmailVerified: u.EmailVerified, AuthTime: started, Session: fam})
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

// revokeFamily ends a refresh-token family in tx: none of its refresh tokens rotates again, and once
// the transaction has committed and the entries are published (s.published), none of its access
// tokens passes either. It appends the family to *ended unless it had already ended.
func revokeFamily(ctx context.Context, tx pgx.Tx, ksid shardkey.KeyspaceID, fam shardkey.ID, now time.Time, reason string, ended *[]revocation.Entry) error {
	var at time.Time
	err := tx.QueryRow(ctx, revokeFamilySQL, ksid.Bytes(), fam.Bytes(), now, reason).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	*ended = append(*ended, revocation.Entry{Family: fam, At: at})
	return nil
}

// revokeFamilyKeys revokes the API keys created in session fam and returns their IDs.
func revokeFamilyKeys(ctx context.Context, tx pgx.Tx, ksid shardkey.KeyspaceID, fam shardkey.ID, now time.Time) ([]string, error) {
	rows, err := tx.Query(ctx, revokeFamilyKeysSQL, ksid.Bytes(), fam.Bytes(), now)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var b []byte
		if err := row.Scan(&b); err != nil {
			return "", err
		}
		id, err := shardkey.IDFromBytes(b)
		return id.String(), err
	})
	if ids == nil {
		ids = []string{}
	}
	return ids, err
}

// revokeSessions ends every session of user in tx (log out everywhere), appending them to *ended.
func revokeSessions(ctx context.Context, tx pgx.Tx, ksid shardkey.KeyspaceID, user shardkey.ID, now time.Time, reason string, ended *[]revocation.Entry) error {
	rows, err := tx.Query(ctx, revokeUserFamiliesSQL, ksid.Bytes(), user.Bytes(), now, reason)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			idB []byte
			at  time.Time
		)
		if err := rows.Scan(&idB, &at); err != nil {
			rows.Close()
			return err
		}
		fam, err := shardkey.IDFromBytes(idB)
		if err != nil {
			rows.Close()
			return err
		}
		*ended = append(*ended, revocation.Entry{Family: fam, At: at})
	}
	return rows.Err()
}

// published tells the node's revocation set about sessions that ended in a committed transaction.
func (s *Service) published(ctx context.Context, ended []revocation.Entry) {
	if s.cfg.Revocations != nil && len(ended) > 0 {
		s.cfg.Revocations.Published(ctx, ended...)
	}
}

// FamilyLog reads the revoked sessions of a shard for api/internal/revocation: the table is this
// package's.
type FamilyLog struct{}

var _ revocation.Source = FamilyLog{}

// RevokedSince lists the families revoked on t after since.
func (FamilyLog) RevokedSince(ctx context.Context, t shardpool.Target, since time.Time) ([]revocation.Entry, error) {
	rows, err := t.Pool.Query(ctx, revokedFamiliesSQL, since)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (revocation.Entry, error) {
		var (
			idB []byte
			e   revocation.Entry
		)
		if err := row.Scan(&idB, &e.At); err != nil {
			return e, err
		}
		var err error
		e.Family, err = shardkey.IDFromBytes(idB)
		return e, err
	})
}
