package accounts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/mailer"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// newUserShard derives the ksid of a new user homed in region and finds its shard, which must be in
// this node's region (else the error is the 421 replay answer naming region).
func (s *Service) newUserShard(ctx context.Context, region string) (shardkey.KeyspaceID, shardpool.Routed, error) {
	t, err := s.topology()
	if err != nil {
		return 0, shardpool.Routed{}, err
	}
	reg, ok := t.Region(region)
	if !ok {
		return 0, shardpool.Routed{}, fmt.Errorf("accounts: region %q is not in the topology", region)
	}
	// The ksid hashes a random account seed, not the email: it is stored once and never recomputed,
	// and it says nothing about the email.
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return 0, shardpool.Routed{}, err
	}
	ksid := shardkey.NewKeyspaceID(reg.Code, seed[:])
	routed, err := s.a.WriteShard(ctx, ksid)
	return ksid, routed, err
}

// newUser is a user about to be created.
type newUser struct {
	KSID   shardkey.KeyspaceID
	Shard  shardpool.Routed
	Email  string // normalised
	Name   string
	Role   authn.Role
	Region string
	// PasswordHash is the PHC string, or "" for a user who signs in only with OAuth.
	PasswordHash string
	// OAuth, when set, is linked to the new user in the same transaction, and its provider verified
	// the email: the user starts verified. A password user starts unverified and is mailed a link.
	OAuth *oauth.Identity
}

// createUser claims the email in the directory, creates the user in its home shard and opens a
// session, releasing the claim if the creation fails.
func (s *Service) createUser(ctx context.Context, nu newUser, m reqMeta) (tokenBundle, error) {
	id, err := s.a.IDs.New(shardkey.KindUser, nu.KSID)
	if err != nil {
		return tokenBundle{}, err
	}
	h := directory.HashEmail(s.cfg.EmailPepper, nu.Email)
	// Everything from the claim to the commit happens within directory.ClaimWindow, far inside the time after
	// which a claim with no user may be taken over (directory.OrphanAfter).
	cctx, cancel := context.WithTimeout(ctx, directory.ClaimWindow)
	defer cancel()
	if err := s.dir.Claim(cctx, h, id, nu.Region); err != nil {
		return tokenBundle{}, err
	}
	claims := []directory.Hash{h}
	if o := nu.OAuth; o != nil {
		// The identity is claimed like the email, so that a sign-in finds its user by (provider,
		// subject) from any region.
		ih := directory.HashIdentity(s.cfg.EmailPepper, o.Provider, o.Subject)
		if err := s.dir.Claim(cctx, ih, id, nu.Region); err != nil {
			s.compensate(ctx, nu.Shard, claims, id)
			return tokenBundle{}, err
		}
		claims = append(claims, ih)
	}
	b, err := s.insertUser(cctx, id, nu, m)
	if err != nil {
		s.compensate(ctx, nu.Shard, claims, id)
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "23505" && pg.ConstraintName == "users_email_normalized_key" {
			// The email exists on this shard without a claim (it predates the directory, or its
			// claim was lost): it is taken all the same.
			return tokenBundle{}, errEmailTaken.WithCause(err)
		}
		return tokenBundle{}, err
	}
	return b, nil
}

func (s *Service) insertUser(ctx context.Context, id shardkey.ID, nu newUser, m reqMeta) (tokenBundle, error) {
	now := s.now()
	verified := nu.OAuth != nil
	u := userRow{KSID: nu.KSID, ID: id, Email: nu.Email, EmailNorm: nu.Email, Name: nu.Name, Role: nu.Role, Region: nu.Region, CreatedAt: now, EmailVerified: verified}
	var (
		b    tokenBundle
		mail *mailer.Message
	)
	err := pgx.BeginFunc(ctx, nu.Shard.Pool, func(tx pgx.Tx) error {
		k, uid := nu.KSID.Bytes(), id.Bytes()
		batch := &pgx.Batch{}
		batch.Queue(insertUserSQL, k, uid, nu.Email, nu.Name, string(nu.Role), nu.Region, now, verified)
		if nu.PasswordHash != "" {
			batch.Queue(insertCredentialsSQL,
				k, uid, nu.PasswordHash, now)
		}
		batch.Queue(insertProfileSQL, k, uid, now)
		batch.Queue(insertSettingsSQL, k, uid, now)
		if o := nu.OAuth; o != nil {
			batch.Queue(insertIdentitySQL,
				k, o.Provider, o.Subject, uid, nu.Email, now)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		details := map[string]any{"role": string(nu.Role), "region": nu.Region, "method": "password"}
		if nu.OAuth != nil {
			details["method"] = "oauth:" + nu.OAuth.Provider
		}
		if err := s.record(ctx, tx, nu.KSID, id, audit.ActionRegister, id.String(), m, details); err != nil {
			return err
		}
		if !verified {
			msg, err := s.issueVerification(ctx, tx, u, m)
			if err != nil {
				return err
			}
			mail = &msg
		}
		var (
			fam shardkey.ID
			err error
		)
		if b, fam, err = s.startSession(ctx, tx, u); err != nil {
			return err
		}
		if nu.OAuth != nil {
			return s.record(ctx, tx, nu.KSID, id, audit.ActionOAuthLogin, fam.String(), m,
				map[string]any{"provider": nu.OAuth.Provider, "linked": true})
		}
		return nil
	})
	if err != nil {
		return tokenBundle{}, fmt.Errorf("accounts: creating user: %w", err)
	}
	if mail != nil {
		// The account exists whether or not the mail goes out: a failure is logged, and the user asks
		// for another link (POST /auth/verify-email/resend).
		_ = s.sendVerification(ctx, u, *mail)
	}
	return b, nil
}

// compensate undoes a claim whose user was not created. If the creation's outcome is unknown (the
// commit's answer was lost), the claim stays: the user may exist, and a claim without a user is
// taken over later by the orphan rule, while a user without a claim would break uniqueness.
func (s *Service) compensate(ctx context.Context, shard shardpool.Routed, hs []directory.Hash, id shardkey.ID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var exists bool
	err := shard.Pool.QueryRow(ctx, userExistsSQL,
		id.KeyspaceID().Bytes(), id.Bytes()).Scan(&exists)
	if err != nil || exists {
		s.a.Log.Warn("email claim kept after a failed registration", "user", id.String(), "exists", exists, "err", err)
		return
	}
	for _, h := range hs {
		if err := s.dir.Release(ctx, h, id); err != nil {
			s.a.Log.Warn("directory claim not released; it becomes an orphan", "user", id.String(), "err", err)
		}
	}
}
