package accounts

// Every statement of the accounts core, by table. The email directory (package directory) keeps its
// own SQL; package oauth has none.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Users and their credentials (auth.users, auth.credentials, auth.oauth_identities).
const (
	insertUserSQL = `
INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region, created_at, updated_at, email_verified_at)
VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $7, CASE WHEN $8::bool THEN $7::timestamptz END)`
	insertCredentialsSQL = `INSERT INTO auth.credentials (ksid, user_id, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`
	insertIdentitySQL    = `INSERT INTO auth.oauth_identities (ksid, provider, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5, $6)`
	linkIdentitySQL      = `
INSERT INTO auth.oauth_identities (ksid, provider, subject, user_id, email, created_at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ksid, provider, subject) DO NOTHING`
	identityLinkedSQL = `
SELECT EXISTS (SELECT 1 FROM auth.oauth_identities WHERE ksid = $1 AND provider = $2 AND subject = $3 AND user_id = $4)`
	userExistsSQL       = `SELECT EXISTS (SELECT 1 FROM auth.users WHERE ksid = $1 AND id = $2)`
	userWithPasswordSQL = `
SELECT u.id, u.email, u.email_normalized, u.name, u.role, u.region, u.created_at, u.deleted_at IS NOT NULL, u.email_verified_at IS NOT NULL, c.password_hash
FROM auth.users u LEFT JOIN auth.credentials c ON c.ksid = u.ksid AND c.user_id = u.id
WHERE u.ksid = $1 AND u.id = $2`
	rehashPasswordSQL = `UPDATE auth.credentials SET password_hash = $3 WHERE ksid = $1 AND user_id = $2 AND password_hash = $4`
)

// The rows every new user starts with in tables other features own, written in the registration's
// transaction so that no user exists without them (see docs/schema.md, "Who owns which table").
const (
	insertProfileSQL  = `INSERT INTO core.profiles (ksid, user_id, created_at, updated_at) VALUES ($1, $2, $3, $3)`
	insertSettingsSQL = `INSERT INTO core.settings (ksid, user_id, created_at, updated_at) VALUES ($1, $2, $3, $3)`
)

// Sessions: refresh-token families and their tokens (auth.refresh_token_families, auth.refresh_tokens).
const (
	insertFamilySQL       = `INSERT INTO auth.refresh_token_families (ksid, id, user_id, created_at) VALUES ($1, $2, $3, $4)`
	insertRefreshTokenSQL = `
INSERT INTO auth.refresh_tokens (ksid, token_hash, family_id, user_id, issued_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)`
	lockRefreshTokenSQL = `
SELECT t.family_id, t.user_id, t.expires_at, t.used_at, f.revoked_at, f.created_at
FROM auth.refresh_tokens t
JOIN auth.refresh_token_families f ON f.ksid = t.ksid AND f.id = t.family_id
WHERE t.ksid = $1 AND t.token_hash = $2
FOR UPDATE OF t, f`
	useRefreshTokenSQL = `UPDATE auth.refresh_tokens SET used_at = GREATEST(issued_at, $3) WHERE ksid = $1 AND token_hash = $2`
	revokeFamilySQL    = `
UPDATE auth.refresh_token_families SET revoked_at = GREATEST(created_at, $3), revoked_reason = $4
WHERE ksid = $1 AND id = $2 AND revoked_at IS NULL
RETURNING revoked_at`
	revokeUserFamiliesSQL = `
UPDATE auth.refresh_token_families SET revoked_at = GREATEST(created_at, $3), revoked_reason = $4
WHERE ksid = $1 AND user_id = $2 AND revoked_at IS NULL
RETURNING id, revoked_at`
	// revokedFamiliesSQL is what every node reads from every shard of its region (through
	// refresh_token_families_revoked_idx) to refuse revoked sessions' access tokens.
	revokedFamiliesSQL = `SELECT id, revoked_at FROM auth.refresh_token_families WHERE revoked_at > $1`
	logoutFamilySQL    = `
UPDATE auth.refresh_token_families f SET revoked_at = GREATEST(f.created_at, $4), revoked_reason = 'logout'
WHERE f.ksid = $1 AND f.id = $3 AND f.revoked_at IS NULL
AND EXISTS (SELECT 1 FROM auth.refresh_tokens t WHERE t.ksid = $1 AND t.token_hash = $2 AND t.family_id = $3)
RETURNING f.user_id, f.revoked_at`
)

// API keys (auth.api_keys).
const (
	countAPIKeysSQL = `SELECT count(*) FROM auth.api_keys WHERE ksid = $1 AND user_id = $2 AND revoked_at IS NULL`
	insertAPIKeySQL = `
INSERT INTO auth.api_keys (ksid, id, user_id, name, key_prefix, key_hash, scopes, created_at, expires_at, created_by_family)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	// revokeFamilyKeysSQL revokes the API keys created in a session (refresh-token reuse).
	revokeFamilyKeysSQL = `
UPDATE auth.api_keys SET revoked_at = GREATEST(created_at, $3)
WHERE ksid = $1 AND created_by_family = $2 AND revoked_at IS NULL
RETURNING id`
	listAPIKeysSQL = `
SELECT id, name, scopes, key_prefix, created_at, last_used_at, expires_at FROM auth.api_keys
WHERE ksid = $1 AND user_id = $2 AND revoked_at IS NULL AND ($3::bytea IS NULL OR id < $3)
ORDER BY id DESC LIMIT $4`
	revokeAPIKeySQL = `
UPDATE auth.api_keys SET revoked_at = GREATEST(created_at, $4)
WHERE ksid = $1 AND id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING name`
	apiKeyExistsSQL    = `SELECT EXISTS (SELECT 1 FROM auth.api_keys WHERE ksid = $1 AND id = $2 AND user_id = $3)`
	apiKeyPrincipalSQL = `
SELECT k.key_hash, k.scopes, k.revoked_at IS NOT NULL, k.last_used_at, k.expires_at, u.id, u.role, u.region, u.deleted_at IS NOT NULL,
       u.email_verified_at IS NOT NULL
FROM auth.api_keys k JOIN auth.users u ON u.ksid = k.ksid AND u.id = k.user_id
WHERE k.ksid = $1 AND k.id = $2`
	touchAPIKeySQL = `
UPDATE auth.api_keys SET last_used_at = $3
WHERE ksid = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at <= $4)`
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
	// EmailVerified: the owner proved the email (a verification link, or the provider that created the
	// account had verified it).
	EmailVerified bool
}

func (u userRow) json() *userJSON {
	return &userJSON{ID: u.ID, Email: u.Email, EmailVerified: u.EmailVerified, Name: u.Name, Role: u.Role, Region: u.Region, CreatedAt: u.CreatedAt.UTC()}
}

var errNoUser = errors.New("accounts: no such user")

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// userColumns are the columns of a userRow, in scanUser's order.
const userColumns = `id, email, email_normalized, name, role, region, created_at, deleted_at IS NOT NULL, email_verified_at IS NOT NULL`

// selectUserSQL reads a user by ksid and ID; loadUser appends a locking clause.
const selectUserSQL = `SELECT ` + userColumns + ` FROM auth.users WHERE ksid = $1 AND id = $2 `

func scanUser(row pgx.Row, ksid shardkey.KeyspaceID, extra ...any) (userRow, error) {
	u := userRow{KSID: ksid}
	var id []byte
	var role string
	dst := append([]any{&id, &u.Email, &u.EmailNorm, &u.Name, &role, &u.Region, &u.CreatedAt, &u.Deleted, &u.EmailVerified}, extra...)
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
	return scanUser(q.QueryRow(ctx, selectUserSQL+lock,
		ksid.Bytes(), id.Bytes()), ksid)
}
