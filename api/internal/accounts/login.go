package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// handleLogin works in any region: the directory says where the user lives, and the password is
// checked there (here, or by the home region's node through an Internal route).
//
// Failed-login budgets: per client IP, spent here before anything else; per email, spent where the
// password is checked (the home region, so that every region's attempts on one account share one
// budget), and here for emails nobody has. A GCRA cannot refund, so a budget is spent before the
// check and a success gives the email's budget back (failures since the last success are what
// count); a success still costs the IP one event.
func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	ctx, m := r.Context(), s.metaOf(r)
	if err := s.spend(ctx, "ip:"+m.IP.String()); err != nil {
		return err
	}
	h := directory.HashEmail(s.cfg.EmailPepper, req.Email)
	c, found, err := s.dir.Lookup(ctx, h)
	if err != nil {
		return err
	}
	if !found {
		if err := s.spend(ctx, "email:"+h.RateKey()); err != nil {
			return err
		}
		// The same work as a wrong password, so the answer's timing does not tell the two apart.
		if _, _, err := s.pw.check(ctx, req.Password, ""); err != nil {
			return err
		}
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
	err = s.a.Peers.Call(ctx, home, http.MethodPost, internalPath("/internal/login"), internalLoginRequest{
		UserID: c.UserID, Email: req.Email, Password: req.Password, IP: m.IP, UserAgent: m.UserAgent,
	}, &ans)
	if err != nil {
		return peerError(ctx, home, err)
	}
	switch {
	case ans.Outcome == outcomeOK && ans.Bundle != nil:
		rest.WriteJSON(w, http.StatusOK, ans.Bundle)
		return nil
	case ans.Outcome == outcomeLimited:
		return apierror.RateLimited(time.Duration(ans.RetryAfterMS) * time.Millisecond)
	case ans.Outcome == outcomeInvalid:
		return errInvalidCredentials
	}
	return fmt.Errorf("accounts: region %s answered a login with %q", home, ans.Outcome)
}

// loginLocal checks a password for userID, whose data is in this region, and opens a session.
func (s *Service) loginLocal(ctx context.Context, userID shardkey.ID, email, password string, h directory.Hash, m reqMeta) (tokenBundle, error) {
	routed, err := s.a.WriteShard(ctx, userID.KeyspaceID())
	if err != nil {
		return tokenBundle{}, err
	}
	if err := s.spend(ctx, "email:"+h.RateKey()); err != nil {
		return tokenBundle{}, err
	}
	ksid := routed.Route.KeyspaceID
	var phc *string
	u, err := scanUser(routed.Pool.QueryRow(ctx, `
		SELECT u.id, u.email, u.email_normalized, u.name, u.role, u.region, u.created_at, u.deleted_at IS NOT NULL, c.password_hash
		FROM auth.users u LEFT JOIN auth.credentials c ON c.ksid = u.ksid AND c.user_id = u.id
		WHERE u.ksid = $1 AND u.id = $2`, ksid.Bytes(), userID.Bytes()), ksid, &phc)
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
		if stored != "" {
			s.recordAlone(ctx, routed.Pool, ksid, shardkey.ID{}, audit.ActionLoginFailed, u.ID.String(), m, map[string]any{"reason": "wrong_password"})
		}
		return tokenBundle{}, errInvalidCredentials
	}
	s.resetBudget(ctx, "email:"+h.RateKey())
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
			if _, err := tx.Exec(ctx, `UPDATE auth.credentials SET password_hash = $3 WHERE ksid = $1 AND user_id = $2 AND password_hash = $4`,
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

// internalLoginRequest is a login forwarded to the user's home region by the node that took it.
type internalLoginRequest struct {
	UserID    shardkey.ID `json:"user_id"`
	Email     string      `json:"email"`
	Password  string      `json:"password"`
	IP        netip.Addr  `json:"ip,omitzero"`
	UserAgent string      `json:"user_agent,omitempty"`
}

func (r *internalLoginRequest) Validate() map[string]string {
	f := (&loginRequest{Email: r.Email, Password: r.Password}).Validate()
	if r.UserID.Kind() != shardkey.KindUser {
		f["user_id"] = "must be a user ID"
	}
	return f
}

// internalLoginAnswer carries the outcome in a 200 so that a 429's retry time survives the hop.
type internalLoginAnswer struct {
	Outcome      string       `json:"outcome"`
	RetryAfterMS int64        `json:"retry_after_ms,omitempty"`
	Bundle       *tokenBundle `json:"bundle,omitempty"`
}

const (
	outcomeOK      = "ok"
	outcomeInvalid = "invalid_credentials"
	outcomeLimited = "rate_limited"
)

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
		rest.WriteJSON(w, http.StatusOK, internalLoginAnswer{Outcome: outcomeLimited, RetryAfterMS: e.RetryAfter.Milliseconds()})
	default:
		return err
	}
	return nil
}
