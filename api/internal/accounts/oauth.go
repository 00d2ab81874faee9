package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/8thdegree/meridian/api/internal/richtext"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// The accounts core's side of OAuth sign-in (package oauth): find the user an identity is linked to
// or the holder of an email, sign a linked identity in, create a user for a new one, link one for the
// account's proven owner. oauthAccounts keeps these methods off Service's own.

type oauthAccounts struct{ s *Service }

var _ oauth.Accounts = oauthAccounts{}

func (o oauthAccounts) FindIdentity(ctx context.Context, provider, subject string) (shardkey.ID, string, bool, error) {
	c, found, err := o.s.dir.Lookup(ctx, directory.HashIdentity(o.s.cfg.EmailPepper, provider, subject))
	if err != nil || !found {
		return shardkey.ID{}, "", false, err
	}
	return c.UserID, o.s.regionOf(c.UserID, c.HomeRegion), true, nil
}

func (o oauthAccounts) FindUser(ctx context.Context, email string) (shardkey.ID, string, bool, error) {
	c, found, err := o.s.dir.Lookup(ctx, directory.HashEmail(o.s.cfg.EmailPepper, email))
	if err != nil || !found {
		return shardkey.ID{}, "", false, err
	}
	return c.UserID, o.s.regionOf(c.UserID, c.HomeRegion), true, nil
}

func (o oauthAccounts) SignIn(ctx context.Context, user shardkey.ID, id oauth.Identity, m oauth.Meta) (any, error) {
	b, err := o.s.oauthLoginLocal(ctx, user, id, reqMeta(m))
	if errors.Is(err, errNoUser) {
		return nil, oauth.ErrNoUser
	}
	if errors.Is(err, errNotLinked) {
		return nil, oauth.ErrNotLinked
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (o oauthAccounts) CreateUser(ctx context.Context, id oauth.Identity, role authn.Role, m oauth.Meta) (any, error) {
	s := o.s
	ksid, routed, err := s.newUserShard(ctx, s.a.Region)
	if err != nil {
		return nil, err
	}
	b, err := s.createUser(ctx, newUser{KSID: ksid, Shard: routed, Email: id.Email, Name: displayName(id.Name, id.Email), Role: role, Region: s.a.Region, OAuth: &id}, reqMeta(m))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// displayName makes a valid user name from what the provider said, or the email's local part.
func displayName(name, email string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, strings.TrimSpace(richtext.StripMarkup(name)))
	if name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	if r := []rune(name); len(r) > maxName {
		name = strings.TrimSpace(string(r[:maxName]))
	}
	return name
}

var errNotLinked = errors.New("accounts: the identity is not linked to the user")

// oauthLoginLocal opens a session for userID, whose data is in this region, if the identity is linked
// to them. It never links (Link does, for the account's proven owner).
func (s *Service) oauthLoginLocal(ctx context.Context, userID shardkey.ID, id oauth.Identity, m reqMeta) (tokenBundle, error) {
	routed, err := s.a.WriteShard(ctx, userID.KeyspaceID())
	if err != nil {
		return tokenBundle{}, err
	}
	ksid := routed.Route.KeyspaceID
	var b tokenBundle
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		u, err := loadUser(ctx, tx, ksid, userID, "FOR SHARE")
		if err != nil {
			return err
		}
		if u.Deleted {
			return errNoUser
		}
		var linked bool
		if err := tx.QueryRow(ctx, identityLinkedSQL, ksid.Bytes(), id.Provider, id.Subject, userID.Bytes()).Scan(&linked); err != nil {
			return err
		}
		if !linked {
			return errNotLinked
		}
		var fam shardkey.ID
		if b, fam, err = s.startSession(ctx, tx, u); err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, userID, audit.ActionOAuthLogin, fam.String(), m,
			map[string]any{"provider": id.Provider, "linked": false})
	})
	return b, err
}

// Link links id to the caller's account (POST /auth/oauth/{provider}/link). The caller proves they
// hold the account: an access token (not an API key), the account's password if it has one, a
// verified email, and the provider vouched for that same email. The identity's directory claim is
// taken first, so an identity is never linked to two accounts in any region.
func (o oauthAccounts) Link(ctx context.Context, p authn.Principal, id oauth.Identity, password string, om oauth.Meta) error {
	s, m := o.s, reqMeta(om)
	if p.Method == authn.MethodAPIKey {
		return apierror.Forbidden("sign-in providers are linked with an access token, not with an API key")
	}
	if err := p.Can(authn.CapLinkIdentity); err != nil {
		return err
	}
	routed, err := s.a.WriteShard(ctx, p.KSID)
	if err != nil {
		return err
	}
	ksid := routed.Route.KeyspaceID
	var phc *string
	u, err := scanUser(routed.Pool.QueryRow(ctx, userWithPasswordSQL, ksid.Bytes(), p.UserID.Bytes()), ksid, &phc)
	if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
		return apierror.NotFound("user")
	}
	if err != nil {
		return err
	}
	if !u.EmailVerified {
		return authn.ErrEmailUnverified
	}
	if u.EmailNorm != id.Email {
		return apierror.Forbidden("the provider vouched for another email than this account's")
	}
	if phc != nil {
		h := directory.HashEmail(s.cfg.EmailPepper, u.EmailNorm)
		if err := s.throttled(ctx, m.IP, h); err != nil {
			return err
		}
		ok, _, err := s.pw.check(ctx, password, *phc)
		if err != nil {
			return err
		}
		if !ok {
			s.failed(ctx, m.IP, h)
			s.recordAlone(ctx, routed.Pool, ksid, shardkey.ID{}, audit.ActionLoginFailed, u.ID.String(), m, map[string]any{"reason": "wrong_password", "for": "oauth_link"})
			return errInvalidCredentials
		}
		s.succeeded(ctx, h)
	}
	ih := directory.HashIdentity(s.cfg.EmailPepper, id.Provider, id.Subject)
	cctx, cancel := context.WithTimeout(ctx, directory.ClaimWindow)
	defer cancel()
	if err := s.dir.Claim(cctx, ih, u.ID, u.Region); err != nil {
		if isTaken(err) {
			return apierror.Conflict("identity_taken", "this "+id.Provider+" account is already linked to another account")
		}
		return err
	}
	err = pgx.BeginFunc(cctx, routed.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, linkIdentitySQL, ksid.Bytes(), id.Provider, id.Subject, u.ID.Bytes(), id.Email, s.now())
		if err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, u.ID, audit.ActionOAuthLinked, id.Provider, m,
			map[string]any{"provider": id.Provider, "new": tag.RowsAffected() == 1})
	})
	if err != nil {
		s.releaseLink(ctx, routed, ih, u.ID, id)
		return fmt.Errorf("accounts: linking an identity: %w", err)
	}
	return nil
}

func isTaken(err error) bool {
	var e *apierror.Error
	return errors.As(err, &e) && e.Code == directory.ErrTaken.Code
}

// releaseLink undoes the identity claim of a link that did not commit. If the outcome is unknown (the
// identity row may exist), the claim stays.
func (s *Service) releaseLink(ctx context.Context, shard shardpool.Routed, h directory.Hash, user shardkey.ID, id oauth.Identity) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var linked bool
	err := shard.Pool.QueryRow(ctx, identityLinkedSQL, shard.Route.KeyspaceID.Bytes(), id.Provider, id.Subject, user.Bytes()).Scan(&linked)
	if err != nil || linked {
		s.a.Log.Warn("identity claim kept after a failed link", "user", user.String(), "linked", linked, "err", err)
		return
	}
	if err := s.dir.Release(ctx, h, user); err != nil {
		s.a.Log.Warn("identity claim not released", "user", user.String(), "err", err)
	}
}
