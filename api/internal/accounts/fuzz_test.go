package accounts

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// FuzzDecoders feeds every request body this package decodes through the strict decoder: no input
// may panic, a rejection must be a 4xx, and whatever is accepted must satisfy the rules the handlers
// then rely on.
func FuzzDecoders(f *testing.F) {
	for _, seed := range []string{
		`{"email":"ada@example.com","password":"0123456789","name":"Ada","role":"client"}`,
		`{"email":" ADA@EXAMPLE.COM ","password":"0123456789","name":" Ada ","role":"freelancer","region":"eu-west"}`,
		`{"email":"a@b","password":"x"}`,
		`{"refresh_token":"mrt_tfm_065wzsb800g370x3nmh42kr5044e3xj7.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"name":"ci","scopes":["jobs:read","jobs:read"]}`,
		`{"user_id":"usr_065wzsb800g370x3nmh42kr104106105","provider":"github","subject":"1","email":"a@b.co","ip":"::1"}`,
		`{"user_id":"usr_065wzsb800g370x3nmh42kr104106105","email":"a@b.co","password":"p","ip":"1.2.3.4"}`,
		`{"token":"mev_usr_065wzsb800g370x3nmh42kr104106105.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"email": null}`, `[]`, `{} {}`, `"x"`, `{"role": 5}`, `{"scopes": [null]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(name string, v any, ok func() string) {
			err := rest.DecodeBytes(bytes.NewReader(data), v)
			if err != nil {
				var e *apierror.Error
				if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
					t.Fatalf("%s: %q: a rejection that is not a 4xx: %v", name, data, err)
				}
				return
			}
			if problem := ok(); problem != "" {
				t.Fatalf("%s: %q accepted, but %s", name, data, problem)
			}
		}
		var reg registerRequest
		check("register", &reg, func() string {
			switch {
			case directory.EmailProblem(reg.Email) != "" || reg.Email != directory.NormalizeEmail(reg.Email):
				return "the email is not a normalised valid address"
			case utf8.RuneCountInString(reg.Password) < minPassword || utf8.RuneCountInString(reg.Password) > maxPassword:
				return "the password length is out of bounds"
			case nameProblem(reg.Name, maxName) != "" || reg.Name != strings.TrimSpace(reg.Name):
				return "the name is invalid"
			case reg.Role != authn.Client && reg.Role != authn.Freelancer:
				return "the role is not client or freelancer"
			}
			return ""
		})
		var login loginRequest
		check("login", &login, func() string {
			if login.Email == "" || login.Password == "" || len(login.Email) > directory.MaxEmail {
				return "a login without an email or password"
			}
			return ""
		})
		var ref refreshRequest
		check("refresh", &ref, func() string {
			if ref.family.Kind() != shardkey.KindTokenFamily {
				return "no token family"
			}
			return ""
		})
		var key apiKeyRequest
		check("api key", &key, func() string {
			if nameProblem(key.Name, maxKeyName) != "" || len(key.Scopes) == 0 {
				return "a key without a name or scopes"
			}
			for i, s := range key.Scopes {
				if !slices.Contains(Scopes(), s) || slices.Index(key.Scopes, s) != i {
					return "an unknown or repeated scope"
				}
			}
			return ""
		})
		var il internalLoginRequest
		check("internal login", &il, func() string {
			if il.UserID.Kind() != shardkey.KindUser {
				return "no user"
			}
			return ""
		})
		var ve verifyEmailRequest
		check("verify email", &ve, func() string {
			if ve.user.Kind() != shardkey.KindUser || !strings.HasPrefix(ve.Token, verifyPrefix+ve.user.String()+".") {
				return "a verification token that names no user"
			}
			return ""
		})
	})
}

// FuzzCredentials: the parsers of client-held credentials and the email hash never panic (the OAuth cookie: oauth.FuzzState), and
// what they accept round-trips.
func FuzzCredentials(f *testing.F) {
	gen := shardkey.NewGenerator(nil, nil)
	fam, _ := gen.New(shardkey.KindTokenFamily, 0x4000000000000001)
	keyID, _ := gen.New(shardkey.KindAPIKey, 0x4000000000000001)
	tok, _ := newRefreshToken(fam)
	key, _, _ := newAPIKey(keyID)
	user, _ := gen.New(shardkey.KindUser, 0x4000000000000001)
	vt, _ := newVerifyToken(user)
	for _, s := range []string{tok, key, vt, "", "mrt_", "mk_", "mev_", ".", directory.HashEmail(testPepper, "a@b.co").String()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := parseRefreshToken(s); err == nil && (id.Kind() != shardkey.KindTokenFamily || !strings.HasPrefix(s, refreshPrefix+id.String()+".")) {
			t.Fatalf("refresh token %q parsed to %s", s, id)
		}
		if id, err := parseAPIKey(s); err == nil && (id.Kind() != shardkey.KindAPIKey || !strings.HasPrefix(s, apiKeyPrefix+id.String()+"_")) {
			t.Fatalf("API key %q parsed to %s", s, id)
		}
		if id, err := parseVerifyToken(s); err == nil && (id.Kind() != shardkey.KindUser || !strings.HasPrefix(s, verifyPrefix+id.String()+".")) {
			t.Fatalf("verification token %q parsed to %s", s, id)
		}
		if h, err := directory.ParseHash(s); err == nil && h.String() != s {
			t.Fatalf("email hash %q is not canonical", s)
		}
	})
}
