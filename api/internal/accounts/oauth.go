package accounts

import (
	"context"
	"errors"
	"strings"

	"github.com/8thdegree/meridian/api/internal/richtext"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// The accounts core's side of OAuth sign-in (package oauth): find the holder of a verified email,
// sign an identity in, create a user for it. oauthAccounts keeps these methods off Service's own.

type oauthAccounts struct{ s *Service }

var _ oauth.Accounts = oauthAccounts{}

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
		if u.Deleted || u.EmailNorm != id.Email {
			return errNoUser
		}
		tag, err := tx.Exec(ctx, linkIdentitySQL,
			ksid.Bytes(), id.Provider, id.Subject, userID.Bytes(), id.Email, s.now())
		if err != nil {
			return err
		}
		var fam shardkey.ID
		if b, fam, err = s.startSession(ctx, tx, u); err != nil {
			return err
		}
		return s.record(ctx, tx, ksid, userID, audit.ActionOAuthLogin, fam.String(), m,
			map[string]any{"provider": id.Provider, "linked": tag.RowsAffected() == 1})
	})
	return b, err
}
