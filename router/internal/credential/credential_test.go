package credential

import (
	"errors"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

func id(t testing.TB, kind shardkey.Kind) shardkey.ID {
	g := shardkey.NewGenerator(nil, nil)
	v, err := g.New(kind, shardkey.NewKeyspaceID(0x40, []byte("someone")))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAuthorization(t *testing.T) {
	cases := []struct {
		h      string
		scheme Scheme
		cred   string
	}{
		{"", None, ""},
		{"Bearer abc", Bearer, "abc"},
		{"bearer   abc  ", Bearer, "abc"},
		{"BEARER abc", Bearer, "abc"},
		{"ApiKey mk_x", APIKey, "mk_x"},
		{"apikey mk_x", APIKey, "mk_x"},
		{"Basic dXNlcg==", Unknown, "dXNlcg=="},
		{"Bearer", Bearer, ""},
		{"token", Unknown, ""},
	}
	for _, c := range cases {
		s, cred := Authorization(c.h)
		if s != c.scheme || cred != c.cred {
			t.Errorf("Authorization(%q) = %d %q, want %d %q", c.h, s, cred, c.scheme, c.cred)
		}
	}
}

func TestAPIKeyAndRefreshToken(t *testing.T) {
	key, fam, user := id(t, shardkey.KindAPIKey), id(t, shardkey.KindTokenFamily), id(t, shardkey.KindUser)
	secret := strings.Repeat("a", 43)
	cases := []struct {
		name string
		f    func(string) (shardkey.ID, error)
		in   string
		want shardkey.ID
	}{
		{"api key", APIKeyID, "mk_" + key.String() + "_" + secret, key},
		{"api key with base64url secret", APIKeyID, "mk_" + key.String() + "_" + strings.Repeat("-_9Z", 10) + "abc", key},
		{"api key of a user ID", APIKeyID, "mk_" + user.String() + "_" + secret, shardkey.ID{}},
		{"api key with a short secret", APIKeyID, "mk_" + key.String() + "_" + secret[1:], shardkey.ID{}},
		{"api key with a bad separator", APIKeyID, "mk_" + key.String() + "." + secret, shardkey.ID{}},
		{"api key with a bad secret", APIKeyID, "mk_" + key.String() + "_" + strings.Repeat("=", 43), shardkey.ID{}},
		{"api key without prefix", APIKeyID, "xx_" + key.String() + "_" + secret, shardkey.ID{}},
		{"refresh token", RefreshFamily, "mrt_" + fam.String() + "." + secret, fam},
		{"refresh token of a key ID", RefreshFamily, "mrt_" + key.String() + "." + secret, shardkey.ID{}},
		{"refresh token with _", RefreshFamily, "mrt_" + fam.String() + "_" + secret, shardkey.ID{}},
		{"empty", RefreshFamily, "", shardkey.ID{}},
	}
	for _, c := range cases {
		got, err := c.f(c.in)
		if c.want.IsZero() {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: got %v, %v; want ErrMalformed", c.name, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func FuzzCredentials(f *testing.F) {
	f.Add("mk_key_065wzsb800g370x3nmh42kr104106105_" + strings.Repeat("a", 43))
	f.Add("mrt_tfm_065wzsb800g370x3nmh42kr104106105." + strings.Repeat("a", 43))
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := APIKeyID(s); err == nil && (id.Kind() != shardkey.KindAPIKey || !strings.Contains(s, id.String())) {
			t.Fatalf("APIKeyID(%q) = %v", s, id)
		}
		if id, err := RefreshFamily(s); err == nil && (id.Kind() != shardkey.KindTokenFamily || !strings.Contains(s, id.String())) {
			t.Fatalf("RefreshFamily(%q) = %v", s, id)
		}
		_, _ = Authorization(s)
	})
}
