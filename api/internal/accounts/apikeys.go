package accounts

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
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
)

var errKeyWithKey = apierror.Forbidden("API keys are managed with an access token, not with an API key")

func (s *Service) handleCreateAPIKey(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	if p.Method == authn.MethodAPIKey {
		return errKeyWithKey
	}
	var req apiKeyRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	routed, err := s.a.WriteShard(ctx, p.KSID)
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	id, err := s.a.IDs.New(shardkey.KindAPIKey, ksid)
	if err != nil {
		return err
	}
	key, secret, err := newAPIKey(id)
	if err != nil {
		return err
	}
	now := s.now()
	out := apiKeyCreated{apiKeyJSON: apiKeyJSON{ID: id, Name: req.Name, Scopes: req.Scopes, Prefix: secret[:keyPrefixLen], CreatedAt: now}, Key: key}
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		// Locking the user row serialises a user's key creations, so the count below holds.
		u, err := loadUser(ctx, tx, ksid, p.UserID, "FOR UPDATE")
		if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
			return apierror.NotFound("user")
		}
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM auth.api_keys WHERE ksid = $1 AND user_id = $2 AND revoked_at IS NULL`,
			ksid.Bytes(), p.UserID.Bytes()).Scan(&n); err != nil {
			return err
		}
		if n >= maxActiveKeys {
			return apierror.Conflict("too_many_api_keys", fmt.Sprintf("a user may have at most %d API keys; revoke one first", maxActiveKeys))
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO auth.api_keys (ksid, id, user_id, name, key_prefix, key_hash, scopes, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			ksid.Bytes(), id.Bytes(), p.UserID.Bytes(), req.Name, out.Prefix, secretHash(key), req.Scopes, now); err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, p.UserID, audit.ActionAPIKeyCreated, id.String(), s.metaOf(r),
			map[string]any{"name": req.Name, "scopes": req.Scopes})
	})
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusCreated, out)
	return nil
}

type keyCursor struct {
	ID shardkey.ID `json:"id"`
}

func (s *Service) handleListAPIKeys(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	if p.Method == authn.MethodAPIKey {
		return errKeyWithKey
	}
	limit, err := rest.Limit(r)
	if err != nil {
		return err
	}
	var after []byte
	if c := r.URL.Query().Get("cursor"); c != "" {
		var cur keyCursor
		if err := rest.DecodeCursor(c, &cur); err != nil {
			return err
		}
		if cur.ID.Kind() != shardkey.KindAPIKey {
			return apierror.Invalid(map[string]string{"cursor": "is not a cursor this endpoint returned"})
		}
		after = cur.ID.Bytes()
	}
	routed, err := s.a.ReadShard(p.KSID)
	if err != nil {
		return err
	}
	rows, err := routed.Pool.Query(r.Context(), `
		SELECT id, name, scopes, key_prefix, created_at, last_used_at FROM auth.api_keys
		WHERE ksid = $1 AND user_id = $2 AND revoked_at IS NULL AND ($3::bytea IS NULL OR id < $3)
		ORDER BY id DESC LIMIT $4`, routed.Route.KeyspaceID.Bytes(), p.UserID.Bytes(), after, limit+1)
	if err != nil {
		return err
	}
	page := rest.Page[apiKeyJSON]{Items: []apiKeyJSON{}}
	for rows.Next() {
		var (
			k   apiKeyJSON
			idB []byte
		)
		if err := rows.Scan(&idB, &k.Name, &k.Scopes, &k.Prefix, &k.CreatedAt, &k.LastUsedAt); err != nil {
			rows.Close()
			return err
		}
		if k.ID, err = shardkey.IDFromBytes(idB); err != nil {
			rows.Close()
			return err
		}
		k.CreatedAt = k.CreatedAt.UTC()
		if k.LastUsedAt != nil {
			t := k.LastUsedAt.UTC()
			k.LastUsedAt = &t
		}
		page.Items = append(page.Items, k)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		page.NextCursor = rest.EncodeCursor(keyCursor{ID: page.Items[limit-1].ID})
	}
	rest.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (s *Service) handleRevokeAPIKey(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	if p.Method == authn.MethodAPIKey {
		return errKeyWithKey
	}
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindAPIKey)
	if err != nil {
		return apierror.Invalid(map[string]string{"id": "must be an API key ID (key_…)"})
	}
	// Another user's key, wherever it lives, is simply not found: no query, no replay to its region.
	if tab := s.a.Topology(); tab == nil || tab.Resolve(id.KeyspaceID()) != p.KSID {
		return apierror.NotFound("API key")
	}
	ctx := r.Context()
	routed, err := s.a.WriteShard(ctx, p.KSID)
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		var name string
		err := tx.QueryRow(ctx, `
			UPDATE auth.api_keys SET revoked_at = GREATEST(created_at, $4)
			WHERE ksid = $1 AND id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING name`,
			ksid.Bytes(), id.Bytes(), p.UserID.Bytes(), s.now()).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			// Revoking twice is fine; revoking what does not exist is not.
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth.api_keys WHERE ksid = $1 AND id = $2 AND user_id = $3)`,
				ksid.Bytes(), id.Bytes(), p.UserID.Bytes()).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return apierror.NotFound("API key")
			}
			return nil
		}
		if err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, p.UserID, audit.ActionAPIKeyRevoked, id.String(), s.metaOf(r), map[string]any{"name": name})
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
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
		hash, userB      []byte
		scopes           []string
		revoked, deleted bool
		lastUsed         *time.Time
		role, region     string
	)
	err = routed.Pool.QueryRow(ctx, `
		SELECT k.key_hash, k.scopes, k.revoked_at IS NOT NULL, k.last_used_at, u.id, u.role, u.region, u.deleted_at IS NOT NULL
		FROM auth.api_keys k JOIN auth.users u ON u.ksid = k.ksid AND u.id = k.user_id
		WHERE k.ksid = $1 AND k.id = $2`, ksid.Bytes(), id.Bytes()).Scan(&hash, &scopes, &revoked, &lastUsed, &userB, &role, &region, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return authn.Principal{}, errBadAPIKey
	}
	if err != nil {
		return authn.Principal{}, fmt.Errorf("accounts: verifying an API key: %w", err)
	}
	if subtle.ConstantTimeCompare(hash, secretHash(key)) != 1 || revoked || deleted || !authn.Role(role).Valid() {
		return authn.Principal{}, errBadAPIKey
	}
	userID, err := shardkey.IDFromBytes(userB)
	if err != nil {
		return authn.Principal{}, err
	}
	now := s.now()
	// During a cutover the keyrange's writes are held; a usage timestamp is not worth holding a read for.
	if (lastUsed == nil || now.Sub(*lastUsed) >= lastUsedEvery) && !routed.Frozen() {
		if _, err := routed.Pool.Exec(ctx, `
			UPDATE auth.api_keys SET last_used_at = $3
			WHERE ksid = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at <= $4)`,
			ksid.Bytes(), id.Bytes(), now, now.Add(-lastUsedEvery)); err != nil {
			s.a.Log.Warn("api key last_used_at not updated", "key", id.String(), "err", err)
		}
	}
	return authn.Principal{
		UserID: userID, KSID: ksid, Role: authn.Role(role), Region: region,
		Method: authn.MethodAPIKey, Scopes: scopes, KeyID: id,
	}, nil
}
