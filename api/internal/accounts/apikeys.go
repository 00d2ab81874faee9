package accounts

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/apierror"
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

// reauthWindow is how recent the login behind an access token must be to create an API key without
// the password: a key outlives the session, so minting one must prove the user, not just the token.
const reauthWindow = 10 * time.Minute

var errReauth = &apierror.Error{Status: http.StatusUnauthorized, Code: "reauthentication_required",
	Message: "creating an API key needs a login in the last 10 minutes, or the account's password in the request"}

// reauthenticated checks that the caller proved who they are recently: the token's login (auth_time)
// is within reauthWindow, or password is the account's password. A wrong password counts as a
// failed login of the account (and is throttled like one), so this is no way around login throttling.
func (s *Service) reauthenticated(ctx context.Context, p authn.Principal, password string, m reqMeta) error {
	now := s.now()
	if !p.AuthTime.IsZero() && now.Sub(p.AuthTime) <= reauthWindow && !p.AuthTime.After(now.Add(time.Minute)) {
		return nil
	}
	if password == "" {
		return errReauth
	}
	routed, err := s.a.ReadShard(ctx, p.KSID)
	if err != nil {
		return err
	}
	var phc *string
	u, err := scanUser(routed.Pool.QueryRow(ctx, userWithPasswordSQL, routed.Route.KeyspaceID.Bytes(), p.UserID.Bytes()), routed.Route.KeyspaceID, &phc)
	if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
		return apierror.NotFound("user")
	}
	if err != nil {
		return err
	}
	h := directory.HashEmail(s.cfg.EmailPepper, u.EmailNorm)
	if err := s.throttled(ctx, m.IP, h); err != nil {
		return err
	}
	stored := ""
	if phc != nil {
		stored = *phc
	}
	ok, _, err := s.pw.check(ctx, password, stored)
	if err != nil {
		return err
	}
	if !ok {
		s.failed(ctx, m.IP, h)
		return errReauth.WithCause(errors.New("wrong password"))
	}
	s.succeeded(ctx, h)
	return nil
}

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
	routed, err := s.a.ReadShard(ctx, id.KeyspaceID())
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
		verified          bool
		lastUsed, expires *time.Time
		role, region      string
	)
	err = routed.Pool.QueryRow(ctx, apiKeyPrincipalSQL, ksid.Bytes(), id.Bytes()).Scan(&hash, &scopes, &revoked, &lastUsed, &expires, &userB, &role, &region, &deleted, &verified)
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
		Method: authn.MethodAPIKey, Scopes: scopes, KeyID: id, EmailVerified: verified,
	}, nil
}

// sessionBytes is the created_by_family of a key made by session fam (NULL when the token named none).
func sessionBytes(fam shardkey.ID) []byte {
	if fam.IsZero() {
		return nil
	}
	return fam.Bytes()
}

func sessionString(fam shardkey.ID) string {
	if fam.IsZero() {
		return ""
	}
	return fam.String()
}
