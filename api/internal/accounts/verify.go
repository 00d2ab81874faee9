package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/mailer"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Email verification. A password registration proves nothing about the email, so the account starts
// unverified and its address is mailed a link:
//
//	<VerifyLinkURL>?token=mev_<user ID>.<32 random bytes, base64url>
//
// The token names the user (and so the shard) like the other opaque credentials (secrets.go); the
// database keeps only its SHA-256, with the address it was sent to, an expiry and used_at. Verifying
// sets used_at with a conditional UPDATE, so a link works once across retries, nodes and regions, and
// only for the address it was sent to. Issuing a link deletes the user's unused ones: the newest mail
// is the one that works.

// Defaults of the verification settings.
const (
	DefaultVerifyTTL = 24 * time.Hour
	verifyPrefix     = "mev_"
)

// DefaultResendLimit is the budget of verification mails per user: 3 an hour (the registration's
// own mail is not counted).
var DefaultResendLimit = ratelimit.Limit{Rate: 3, Period: time.Hour, Burst: 3}

var (
	errBadVerifyToken = &apierror.Error{Status: http.StatusBadRequest, Code: "invalid_verification_token",
		Message: "the verification link is invalid, expired, already used or replaced by a newer one; ask for a new one"}
	errAlreadyVerified = apierror.Conflict("email_already_verified", "the account's email is already verified")
	errMailDown        = apierror.Unavailable("the verification mail could not be sent; retry later", 30*time.Second)
)

// SQL of auth.email_verifications.
const (
	dropUnusedVerificationsSQL = `DELETE FROM auth.email_verifications WHERE ksid = $1 AND user_id = $2 AND used_at IS NULL`
	insertVerificationSQL      = `
INSERT INTO auth.email_verifications (ksid, token_hash, user_id, email, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)`
	// useVerificationSQL spends a link: one UPDATE, so two concurrent uses cannot both succeed.
	useVerificationSQL = `
UPDATE auth.email_verifications SET used_at = GREATEST(created_at, $4)
WHERE ksid = $1 AND token_hash = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $4
RETURNING email`
	markVerifiedSQL = `
UPDATE auth.users SET email_verified_at = GREATEST(created_at, $4)
WHERE ksid = $1 AND id = $2 AND email_normalized = $3 AND deleted_at IS NULL AND email_verified_at IS NULL`
)

func newVerifyToken(user shardkey.ID) (string, error) {
	sec, err := newSecret()
	if err != nil {
		return "", err
	}
	return verifyPrefix + user.String() + "." + sec, nil
}

// parseVerifyToken returns the user a verification token names; only the stored hash says whether
// it is real.
func parseVerifyToken(tok string) (shardkey.ID, error) {
	if len(tok) != len(verifyPrefix)+idTextLen+1+secretTextLen || !strings.HasPrefix(tok, verifyPrefix) {
		return shardkey.ID{}, errMalformed
	}
	rest := tok[len(verifyPrefix):]
	if rest[idTextLen] != '.' || !base64URL(rest[idTextLen+1:]) {
		return shardkey.ID{}, errMalformed
	}
	id, err := shardkey.ParseIDOfKind(rest[:idTextLen], shardkey.KindUser)
	if err != nil {
		return shardkey.ID{}, errMalformed
	}
	return id, nil
}

// issueVerification replaces u's unused links with a new one in tx and returns the mail to send
// once tx commits.
func (s *Service) issueVerification(ctx context.Context, tx pgx.Tx, u userRow, m reqMeta) (mailer.Message, error) {
	tok, err := newVerifyToken(u.ID)
	if err != nil {
		return mailer.Message{}, err
	}
	now := s.now()
	if _, err := tx.Exec(ctx, dropUnusedVerificationsSQL, u.KSID.Bytes(), u.ID.Bytes()); err != nil {
		return mailer.Message{}, fmt.Errorf("accounts: replacing verification links: %w", err)
	}
	if _, err := tx.Exec(ctx, insertVerificationSQL,
		u.KSID.Bytes(), secretHash(tok), u.ID.Bytes(), u.EmailNorm, now, now.Add(s.cfg.VerifyTTL)); err != nil {
		return mailer.Message{}, fmt.Errorf("accounts: new verification link: %w", err)
	}
	if err := s.record(ctx, tx, u.KSID, u.ID, audit.ActionVerificationSent, u.ID.String(), m, nil); err != nil {
		return mailer.Message{}, err
	}
	return s.verificationMail(u, tok), nil
}

func (s *Service) verificationMail(u userRow, tok string) mailer.Message {
	link := s.cfg.VerifyLinkURL + "?" + url.Values{"token": {tok}}.Encode()
	hours := int(s.cfg.VerifyTTL / time.Hour)
	text := fmt.Sprintf(`Hello %s,

Someone, we hope you, created an 8thDegree account with this address. To confirm that the address
is yours, open this link:

%s

or send the token to the API yourself:

POST %s/api/v1/auth/verify-email
Content-Type: application/json

{"token": "%s"}

The link works once and expires in %d hours. Until the address is verified, the account cannot
create API keys, post jobs or reviews, apply to jobs, or be linked to a Google or GitHub sign-in.

If you did not create this account, ignore this mail: nobody can use your address on 8thDegree
without this link.
`, u.Name, link, s.cfg.RedirectBaseURL, tok, hours)
	return mailer.Message{To: u.Email, Subject: "Verify your email address for 8thDegree", Text: text}
}

// sendVerification hands the mail over, bounded by MailTimeout; a failure is logged and reported.
func (s *Service) sendVerification(ctx context.Context, u userRow, msg mailer.Message) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.MailTimeout)
	defer cancel()
	if err := s.cfg.Mailer.Send(ctx, msg); err != nil {
		s.a.Log.Error("verification mail not sent", "user", u.ID.String(), "err", err)
		return errMailDown.WithCause(err)
	}
	return nil
}

// handleVerifyEmail serves POST /auth/verify-email {token}. The token names its user, so a node of
// another region answers 421 and the router replays the request in the user's home region.
func (s *Service) handleVerifyEmail(w http.ResponseWriter, r *http.Request) error {
	var req verifyEmailRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	routed, err := s.a.WriteShard(ctx, req.user.KeyspaceID())
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		now := s.now()
		var email string
		err := tx.QueryRow(ctx, useVerificationSQL, ksid.Bytes(), secretHash(req.Token), req.user.Bytes(), now).Scan(&email)
		if errors.Is(err, pgx.ErrNoRows) {
			return errBadVerifyToken
		}
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, markVerifiedSQL, ksid.Bytes(), req.user.Bytes(), email, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			// The user is gone, already verified, or changed their email since the link was sent.
			return errBadVerifyToken
		}
		return s.record(ctx, tx, ksid, req.user, audit.ActionEmailVerified, req.user.String(), s.metaOf(r), nil)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleResendVerification serves POST /auth/verify-email/resend: a new link for the caller's own
// address, at most ResendLimit mails per user.
func (s *Service) handleResendVerification(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	ctx := r.Context()
	routed, err := s.a.WriteShard(ctx, p.KSID)
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	u, err := loadUser(ctx, routed.Pool, ksid, p.UserID, "")
	if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
		return apierror.NotFound("user")
	}
	if err != nil {
		return err
	}
	if u.EmailVerified {
		return errAlreadyVerified
	}
	res, err := s.cfg.Limiter.Allow(ctx, "auth:verify-resend:"+p.UserID.String(), s.cfg.ResendLimit)
	if err != nil {
		// Without Redis there is no budget to check: refuse rather than let anyone mail-bomb through us.
		return apierror.Unavailable("the mail budget cannot be checked; retry later", 5*time.Second).WithCause(err)
	}
	if !res.Allowed {
		e := apierror.RateLimited(res.RetryAfter)
		e.Header = http.Header{}
		ratelimit.SetHeaders(e.Header, res)
		return e
	}
	var msg mailer.Message
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		cur, err := loadUser(ctx, tx, ksid, p.UserID, "FOR UPDATE")
		if err != nil {
			return err
		}
		if cur.EmailVerified {
			return errAlreadyVerified
		}
		msg, err = s.issueVerification(ctx, tx, cur, s.metaOf(r))
		return err
	})
	if err != nil {
		return err
	}
	if err := s.sendVerification(ctx, u, msg); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// verifyEmailRequest is the body of POST /auth/verify-email.
type verifyEmailRequest struct {
	Token string `json:"token"`
	user  shardkey.ID
}

var _ rest.Validator = (*verifyEmailRequest)(nil)

func (r *verifyEmailRequest) Validate() map[string]string {
	id, err := parseVerifyToken(r.Token)
	if err != nil {
		return map[string]string{"token": "is not a verification token"}
	}
	r.user = id
	return nil
}
