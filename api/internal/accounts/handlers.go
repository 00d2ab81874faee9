package accounts

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/revocation"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// The HTTP handlers of the accounts routes (routes.go). The logic they share with other entry points
// (creating users, checking passwords, sessions, API keys) is in the files named for it.

var errKeyWithKey = apierror.Forbidden("API keys are managed with an access token, not with an API key")

// keyCursor is the next_cursor of a page of API keys: the last key listed.
type keyCursor struct {
	ID shardkey.ID `json:"id"`
}

func (s *Service) handleRegister(w http.ResponseWriter, r *http.Request) error {
	var req registerRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	home := s.a.Region
	if req.Region != "" {
		t, err := s.topology()
		if err != nil {
			return err
		}
		if _, ok := t.Region(req.Region); !ok {
			names := make([]string, 0, len(t.Regions))
			for _, reg := range t.Regions {
				names = append(names, reg.Name)
			}
			slices.Sort(names)
			return apierror.Invalid(map[string]string{"region": "must be one of " + strings.Join(names, ", ")})
		}
		home = req.Region
	}
	// Answer a request for another home region before spending a password hash on it: the router
	// replays it there.
	ksid, routed, err := s.newUserShard(r.Context(), home)
	if err != nil {
		return err
	}
	phc, err := s.pw.hash(r.Context(), req.Password)
	if err != nil {
		return err
	}
	b, err := s.createUser(r.Context(), newUser{
		KSID: ksid, Shard: routed, Email: req.Email, Name: req.Name, Role: req.Role, Region: home, PasswordHash: phc,
	}, s.metaOf(r))
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusCreated, b)
	return nil
}

// handleLogin works in any region: the directory says where the user lives, and the password is
// checked there (here, or by the home region's node through an Internal route).
//
// Failed logins are throttled where the password is checked (see throttled): in the home region for
// an account, here for an email nobody has.
func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	ctx, m := r.Context(), s.metaOf(r)
	h := directory.HashEmail(s.cfg.EmailPepper, req.Email)
	c, found, err := s.dir.Lookup(ctx, h)
	if err != nil {
		return err
	}
	if !found {
		if err := s.throttled(ctx, m.IP, h); err != nil {
			return err
		}
		// The same work as a wrong password, so the answer's timing does not tell the two apart.
		if _, _, err := s.pw.check(ctx, req.Password, ""); err != nil {
			return err
		}
		s.failed(ctx, m.IP, h)
		return errInvalidCredentials
	}
	home := s.regionOf(c.UserID, c.HomeRegion)
	if home == s.a.Region {
		b, err := s.loginLocal(ctx, c.UserID, req.Email, req.Password, h, m)
		if err != nil {
			return err
		}
		rest.WriteJSON(w, http.StatusOK, b)
		return nil
	}
	var ans internalLoginAnswer
	err = s.a.Peers.Call(ctx, home, http.MethodPost, feature.InternalPath("/internal/login"), internalLoginRequest{
		UserID: c.UserID, Email: req.Email, Password: req.Password, IP: m.IP, UserAgent: m.UserAgent,
	}, &ans)
	if err != nil {
		return feature.PeerError(ctx, home, err)
	}
	switch {
	case ans.Outcome == outcomeOK && ans.Bundle != nil:
		rest.WriteJSON(w, http.StatusOK, ans.Bundle)
		return nil
	case ans.Outcome == outcomeLimited:
		e := apierror.RateLimited(time.Duration(ans.RetryAfterMS) * time.Millisecond)
		e.Header = http.Header{}
		for _, k := range rateLimitHeaders {
			if v := ans.RateLimit[k]; v != "" {
				e.Header.Set(k, v)
			}
		}
		return e
	case ans.Outcome == outcomeInvalid:
		return errInvalidCredentials
	}
	return fmt.Errorf("accounts: region %s answered a login with %q", home, ans.Outcome)
}

func (s *Service) handleInternalLogin(w http.ResponseWriter, r *http.Request) error {
	var req internalLoginRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	req.Email = directory.NormalizeEmail(req.Email)
	h := directory.HashEmail(s.cfg.EmailPepper, req.Email)
	b, err := s.loginLocal(r.Context(), req.UserID, req.Email, req.Password, h, reqMeta{IP: req.IP, UserAgent: req.UserAgent})
	var e *apierror.Error
	switch {
	case err == nil:
		rest.WriteJSON(w, http.StatusOK, internalLoginAnswer{Outcome: outcomeOK, Bundle: &b})
	case errors.As(err, &e) && e.Code == outcomeInvalid:
		rest.WriteJSON(w, http.StatusOK, internalLoginAnswer{Outcome: outcomeInvalid})
	case errors.As(err, &e) && e.Code == outcomeLimited:
		ans := internalLoginAnswer{Outcome: outcomeLimited, RetryAfterMS: e.RetryAfter.Milliseconds(), RateLimit: map[string]string{}}
		for _, k := range rateLimitHeaders {
			if v := e.Header.Get(k); v != "" {
				ans.RateLimit[k] = v
			}
		}
		rest.WriteJSON(w, http.StatusOK, ans)
	default:
		return err
	}
	return nil
}

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
		ended []revocation.Entry
	)
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		ended = ended[:0]
		var (
			famB, userB []byte
			expires     time.Time
			used        *time.Time
			revoked     *time.Time
			started     time.Time // the login that opened the session
		)
		err := tx.QueryRow(ctx, lockRefreshTokenSQL, ksid.Bytes(), secretHash(req.RefreshToken)).Scan(&famB, &userB, &expires, &used, &revoked, &started)
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
			if err := revokeFamily(ctx, tx, ksid, fam, now, "refresh token reuse", &ended); err != nil {
				return err
			}
			// The keys minted in a stolen session are the thief's as likely as the user's.
			keys, err := revokeFamilyKeys(ctx, tx, ksid, fam, now)
			if err != nil {
				return err
			}
			return s.record(ctx, tx, ksid, shardkey.ID{}, audit.ActionRefreshTokenReuse, fam.String(), s.metaOf(r),
				map[string]any{"used_at": used.UTC().Format(time.RFC3339Nano), "api_keys_revoked": keys})
		case !now.Before(expires):
			fail = errBadRefresh
			return nil
		case !now.Before(started.Add(s.cfg.SessionMaxAge)):
			fail = errSessionOver
			return revokeFamily(ctx, tx, ksid, fam, now, "session lifetime reached", &ended)
		}
		u, err := loadUser(ctx, tx, ksid, userID, "FOR SHARE")
		if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
			fail = errBadRefresh
			return revokeFamily(ctx, tx, ksid, fam, now, "user deleted", &ended)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, useRefreshTokenSQL,
			ksid.Bytes(), secretHash(req.RefreshToken), now); err != nil {
			return err
		}
		// The session's login time stays the access token's auth_time: a refresh proves no one again.
		b, err = s.continueSession(ctx, tx, u, fam, started)
		return err
	})
	if err != nil {
		return fmt.Errorf("accounts: refresh: %w", err)
	}
	s.published(ctx, ended)
	if fail != nil {
		if reuse {
			s.a.Log.Warn("refresh token reuse: family revoked", "family", req.family.String())
		}
		return fail
	}
	rest.WriteJSON(w, http.StatusOK, b)
	return nil
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
	var ended []revocation.Entry
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		ended = ended[:0]
		// Only the holder of a real token of the family may end it: the family ID alone is not enough.
		var (
			userB []byte
			at    time.Time
		)
		err := tx.QueryRow(ctx, logoutFamilySQL, ksid.Bytes(), secretHash(req.RefreshToken), req.family.Bytes(), s.now()).Scan(&userB, &at)
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
		ended = append(ended, revocation.Entry{Family: req.family, At: at})
		return s.record(ctx, tx, ksid, userID, audit.ActionLogout, req.family.String(), s.metaOf(r), nil)
	})
	if err != nil {
		return fmt.Errorf("accounts: logout: %w", err)
	}
	s.published(ctx, ended)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleLogoutAll ends every session of the caller (log out everywhere): no refresh token of theirs
// rotates again and, within about a second, no access token of theirs passes on any node. API keys
// are credentials of their own and stay (revoke them at /auth/api-keys). It needs a token: an API key
// cannot end its owner's sessions.
func (s *Service) handleLogoutAll(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	if p.Method == authn.MethodAPIKey {
		return errLogoutAllWithKey
	}
	ctx := r.Context()
	routed, err := s.a.WriteShard(ctx, p.KSID)
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	var ended []revocation.Entry
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		ended = ended[:0]
		if err := revokeSessions(ctx, tx, ksid, p.UserID, s.now(), "logout everywhere", &ended); err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, p.UserID, audit.ActionLogoutAll, p.UserID.String(), s.metaOf(r),
			map[string]any{"sessions": len(ended)})
	})
	if err != nil {
		return fmt.Errorf("accounts: logout everywhere: %w", err)
	}
	s.published(ctx, ended)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleCreateAPIKey(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	if p.Method == authn.MethodAPIKey {
		return errKeyWithKey
	}
	if err := p.Can(authn.CapCreateAPIKey); err != nil {
		return err
	}
	var req apiKeyRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	if err := s.reauthenticated(r.Context(), p, req.Password, s.metaOf(r)); err != nil {
		return err
	}
	now := s.now()
	if prob := expiryProblem(req.ExpiresAt, now); prob != "" {
		return apierror.Invalid(map[string]string{"expires_at": prob})
	}
	if req.ExpiresAt != nil {
		t := req.ExpiresAt.UTC().Truncate(time.Microsecond) // what PostgreSQL keeps
		req.ExpiresAt = &t
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
	out := apiKeyCreated{apiKeyJSON: apiKeyJSON{ID: id, Name: req.Name, Scopes: req.Scopes, Prefix: secret[:keyPrefixLen], CreatedAt: now, ExpiresAt: req.ExpiresAt}, Key: key}
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
		if err := tx.QueryRow(ctx, countAPIKeysSQL,
			ksid.Bytes(), p.UserID.Bytes()).Scan(&n); err != nil {
			return err
		}
		if n >= maxActiveKeys {
			return apierror.Conflict("too_many_api_keys", fmt.Sprintf("a user may have at most %d API keys; revoke one first", maxActiveKeys))
		}
		if _, err := tx.Exec(ctx, insertAPIKeySQL,
			ksid.Bytes(), id.Bytes(), p.UserID.Bytes(), req.Name, out.Prefix, secretHash(key), req.Scopes, now, req.ExpiresAt, sessionBytes(p.Session)); err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, p.UserID, audit.ActionAPIKeyCreated, id.String(), s.metaOf(r),
			map[string]any{"name": req.Name, "scopes": req.Scopes, "expires_at": req.ExpiresAt, "session": sessionString(p.Session)})
	})
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusCreated, out)
	return nil
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
	routed, err := s.a.ReadShard(r.Context(), p.KSID)
	if err != nil {
		return err
	}
	rows, err := routed.Pool.Query(r.Context(), listAPIKeysSQL, routed.Route.KeyspaceID.Bytes(), p.UserID.Bytes(), after, limit+1)
	if err != nil {
		return err
	}
	page := rest.Page[apiKeyJSON]{Items: []apiKeyJSON{}}
	for rows.Next() {
		var (
			k   apiKeyJSON
			idB []byte
		)
		if err := rows.Scan(&idB, &k.Name, &k.Scopes, &k.Prefix, &k.CreatedAt, &k.LastUsedAt, &k.ExpiresAt); err != nil {
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
		if k.ExpiresAt != nil {
			t := k.ExpiresAt.UTC()
			k.ExpiresAt = &t
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
	// Both sides resolve through the relocation map: a token issued before a pin names the old ksid.
	if tab := s.a.Topology(); tab == nil || tab.Resolve(id.KeyspaceID()) != tab.Resolve(p.KSID) {
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
		err := tx.QueryRow(ctx, revokeAPIKeySQL,
			ksid.Bytes(), id.Bytes(), p.UserID.Bytes(), s.now()).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			// Revoking twice is fine; revoking what does not exist is not.
			var exists bool
			if err := tx.QueryRow(ctx, apiKeyExistsSQL,
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

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	routed, err := s.a.ReadShard(r.Context(), p.KSID)
	if err != nil {
		return err
	}
	u, err := loadUser(r.Context(), routed.Pool, routed.Route.KeyspaceID, p.UserID, "")
	if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
		return apierror.NotFound("user")
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, u.json())
	return nil
}

// handleJWKS publishes the access-token verification keys; routers fetch it to verify tokens
// without calling a node. Keys change only with a restart, so caches may keep it a few minutes.
func (s *Service) handleJWKS(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "public, max-age=300")
	rest.WriteJSON(w, http.StatusOK, json.RawMessage(s.cfg.Tokens.Keys().JWKS()))
	return nil
}

// handleUserExists serves GET /internal/users/{id}/exists for another region's directory.
func (s *Service) handleUserExists(w http.ResponseWriter, r *http.Request) error {
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindUser)
	if err != nil {
		return apierror.Invalid(map[string]string{"id": "must be a user ID"})
	}
	exists, err := s.userExistsLocal(r.Context(), id)
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, map[string]bool{"exists": exists})
	return nil
}
