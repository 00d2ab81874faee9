package accounts

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

const (
	// maxActiveKeys bounds a user's unrevoked keys: a leaked access token cannot mint keys forever.
	maxActiveKeys = 50
	// lastUsedEvery is how stale last_used_at may get: one write a minute per key, not per request.
	lastUsedEvery = time.Minute
	// keyPrefixLen characters of the secret are kept in clear (key_prefix) so that a user can match a
	// listed key with the one in their config; 48 of its 256 bits, which leaves the rest unguessable.
	keyPrefixLen = 8
	// maxKeyLifetime bounds expires_at: a key meant to expire is not meant to outlive a year.
	maxKeyLifetime = 366 * 24 * time.Hour
)

// expiryProblem checks a requested expires_at against now (Validate has no clock).
func expiryProblem(expires *time.Time, now time.Time) string {
	switch {
	case expires == nil:
		return ""
	case !expires.After(now):
		return "must be in the future"
	case expires.Sub(now) > maxKeyLifetime:
		return "must be at most a year from now"
	}
	return ""
}

// VerifyAPIKey implements authn.APIKeyVerifier: the key names its row (and so its shard), the hash
// is compared in constant time, and the key's user gives the role. A key homed in another region is
// answered with the 421 replay error, like any other request for data held elsewhere.
func (s *Service) VerifyAPIKey(ctx context.Context, key string) (authn.Principal, error) {
	id, err := parseAPIKey(key)
	if err != nil {
		return authn.Principal{}, errBadAPIKey
	}
	routed, err := s.a.ReadShard(id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return authn.Principal{}, errBadAPIKey
	}
	if err != nil {
		return authn.Principal{}, err
	}
	ksid := routed.Route.KeyspaceID
	var (
		hash, userB       []byte
		scopes            []string
		revoked, deleted  bool
		lastUsed, expires *time.Time
		role, region      string
	)
	err = routed.Pool.QueryRow(ctx, apiKeyPrincipalSQL, ksid.Bytes(), id.Bytes()).Scan(&hash, &scopes, &revoked, &lastUsed, &expires, &userB, &role, &region, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return authn.Principal{}, errBadAPIKey
	}
	if err != nil {
		return authn.Principal{}, fmt.Errorf("accounts: verifying an API key: %w", err)
	}
	now := s.now()
	if subtle.ConstantTimeCompare(hash, secretHash(key)) != 1 || revoked || deleted || !authn.Role(role).Valid() ||
		(expires != nil && !now.Before(*expires)) {
		return authn.Principal{}, errBadAPIKey
	}
	userID, err := shardkey.IDFromBytes(userB)
	if err != nil {
		return authn.Principal{}, err
	}
	// During a cutover the keyrange's writes are held; a usage timestamp is not worth holding a read for.
	if (lastUsed == nil || now.Sub(*lastUsed) >= lastUsedEvery) && !routed.Frozen() {
		if _, err := routed.Pool.Exec(ctx, touchAPIKeySQL,
			ksid.Bytes(), id.Bytes(), now, now.Add(-lastUsedEvery)); err != nil {
			s.a.Log.Warn("api key last_used_at not updated", "key", id.String(), "err", err)
		}
	}
	return authn.Principal{
		UserID: userID, KSID: ksid, Role: authn.Role(role), Region: region,
		Method: authn.MethodAPIKey, Scopes: scopes, KeyID: id,
	}, nil
}
