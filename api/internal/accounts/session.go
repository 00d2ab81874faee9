package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// userRow is a row of auth.users; KSID is the row's ksid (the user's ksid now).
type userRow struct {
	KSID      shardkey.KeyspaceID
	ID        shardkey.ID
	Email     string
	EmailNorm string
	Name      string
	Role      authn.Role
	Region    string
	CreatedAt time.Time
	Deleted   bool
}

func (u userRow) json() *userJSON {
	return &userJSON{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, Region: u.Region, CreatedAt: u.CreatedAt.UTC()}
}

var errNoUser = errors.New("accounts: no such user")

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const userColumns = `id, email, email_normalized, name, role, region, created_at, deleted_at IS NOT NULL`

func scanUser(row pgx.Row, ksid shardkey.KeyspaceID, extra ...any) (userRow, error) {
	u := userRow{KSID: ksid}
	var id []byte
	var role string
	dst := append([]any{&id, &u.Email, &u.EmailNorm, &u.Name, &role, &u.Region, &u.CreatedAt, &u.Deleted}, extra...)
	if err := row.Scan(dst...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return u, errNoUser
		}
		return u, err
	}
	var err error
	if u.ID, err = shardkey.IDFromBytes(id); err != nil {
		return u, fmt.Errorf("accounts: stored user id: %w", err)
	}
	u.Role = authn.Role(role)
	return u, nil
}

// loadUser reads a user by its row ksid and ID. lock is "" or a locking clause (FOR UPDATE).
func loadUser(ctx context.Context, q rowQuerier, ksid shardkey.KeyspaceID, id shardkey.ID, lock string) (userRow, error) {
	return scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM auth.users WHERE ksid = $1 AND id = $2 `+lock,
		ksid.Bytes(), id.Bytes()), ksid)
}

// startSession opens a new refresh-token family (one per login) in tx and returns the token bundle.
func (s *Service) startSession(ctx context.Context, tx pgx.Tx, u userRow) (tokenBundle, shardkey.ID, error) {
	fam, err := s.a.IDs.New(shardkey.KindTokenFamily, u.KSID)
	if err != nil {
		return tokenBundle{}, fam, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO auth.refresh_token_families (ksid, id, user_id, created_at) VALUES ($1, $2, $3, $4)`,
		u.KSID.Bytes(), fam.Bytes(), u.ID.Bytes(), s.now()); err != nil {
		return tokenBundle{}, fam, fmt.Errorf("accounts: new token family: %w", err)
	}
	b, err := s.continueSession(ctx, tx, u, fam)
	return b, fam, err
}

// continueSession issues the next refresh token of family fam in tx, and an access token.
func (s *Service) continueSession(ctx context.Context, tx pgx.Tx, u userRow, fam shardkey.ID) (tokenBundle, error) {
	refresh, err := newRefreshToken(fam)
	if err != nil {
		return tokenBundle{}, err
	}
	now := s.now()
	if _, err := tx.Exec(ctx, `
		INSERT INTO auth.refresh_tokens (ksid, token_hash, family_id, user_id, issued_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		u.KSID.Bytes(), secretHash(refresh), fam.Bytes(), u.ID.Bytes(), now, now.Add(s.cfg.RefreshTTL)); err != nil {
		return tokenBundle{}, fmt.Errorf("accounts: new refresh token: %w", err)
	}
	access, _, err := s.cfg.Tokens.Issue(accesstoken.Subject{UserID: u.ID, KSID: u.KSID, Role: string(u.Role), Region: u.Region})
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
