package oauth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

var testStateKey = []byte("test-oauth-state-key-0123456789")

func TestState(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	st := oauthState{Provider: "google", State: "s", Verifier: "v", Nonce: "n", Role: authn.Client, Expires: now.Add(time.Minute).Unix()}
	sealed, err := sealState(testStateKey, st)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := openState(testStateKey, sealed, now); err != nil || got != st {
		t.Fatalf("open: %+v %v", got, err)
	}
	payload, sig, _ := strings.Cut(sealed, ".")
	for name, tc := range map[string]struct {
		key []byte
		v   string
		now time.Time
	}{
		"expired":          {testStateKey, sealed, now.Add(time.Minute)},
		"other key":        {[]byte("another state key, 16+"), sealed, now},
		"no signature":     {testStateKey, payload, now},
		"bad signature":    {testStateKey, payload + "." + sig[:len(sig)-2] + "AA", now},
		"swapped payload":  {testStateKey, "e30." + sig, now},
		"garbage":          {testStateKey, "!!.!!", now},
		"oversized":        {testStateKey, strings.Repeat("a", maxStateCookie+1), now},
		"empty":            {testStateKey, "", now},
		"signature in b64": {testStateKey, payload + "." + sig + "=", now},
	} {
		if _, err := openState(tc.key, tc.v, tc.now); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

// BenchmarkOpenState is the cost of checking a callback's cookie.
func BenchmarkOpenState(b *testing.B) {
	now := time.Now()
	sealed, _ := sealState(testStateKey, oauthState{Provider: "google", State: "state-state-state", Verifier: "verifier-verifier-verifier",
		Nonce: "nonce", Role: authn.Client, Expires: now.Add(time.Minute).Unix()})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := openState(testStateKey, sealed, now); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzState: the state cookie parser never panics, and what it accepts is complete and unexpired.
func FuzzState(f *testing.F) {
	sealed, _ := sealState(testStateKey, oauthState{Provider: "google", State: "s", Verifier: "v", Role: authn.Client, Expires: 1 << 40})
	for _, s := range []string{sealed, "", ".", "e30.", "!!.!!"} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		if st, err := openState(testStateKey, s, now); err == nil && (st.State == "" || st.Verifier == "" || st.Expires <= now.Unix()) {
			t.Fatalf("state cookie %q opened to %+v", s, st)
		}
	})
}

// FuzzInternalLogin feeds the forwarded sign-in body through the strict decoder: no input may panic,
// a rejection must be a 4xx, and what is accepted is a complete identity.
func FuzzInternalLogin(f *testing.F) {
	for _, seed := range []string{
		`{"user_id":"usr_065wzsb800g370x3nmh42kr104106105","provider":"github","subject":"1","email":"a@b.co","ip":"::1"}`,
		`{"user_id":"usr_065wzsb800g370x3nmh42kr104106105","email":"a@b.co","password":"p","ip":"1.2.3.4"}`,
		`{"email": null}`, `[]`, `{} {}`, `"x"`, `{"provider": 5}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var oa internalLoginRequest
		err := rest.DecodeBytes(bytes.NewReader(data), &oa)
		if err != nil {
			var e *apierror.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("%q: a rejection that is not a 4xx: %v", data, err)
			}
			return
		}
		if oa.UserID.Kind() != shardkey.KindUser || directory.EmailProblem(oa.Email) != "" || oa.Subject == "" {
			t.Fatalf("%q accepted, but it is an incomplete identity", data)
		}
	})
}

// The link token: what openLink accepts was sealed with the key, is unexpired and names an identity;
// another key, a tampered payload or an expired token is refused.
func TestLinkToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &Service{a: &feature.Deps{Now: func() time.Time { return now }}, cfg: Config{StateKey: testStateKey}}
	id := Identity{Provider: ProviderGoogle, Subject: "g-1", Email: "ada@example.com"}
	err := s.accountExists(id)
	var e *apierror.Error
	if !errors.As(err, &e) || e.Code != codeAccountExists || e.Details["link_token"] == "" {
		t.Fatalf("accountExists: %v", err)
	}
	tok := e.Details["link_token"].(string)
	if got, err := s.openLink(tok); err != nil || got != id {
		t.Fatalf("openLink: %+v %v", got, err)
	}
	// A state cookie is not a link token, even under the same key.
	st, _ := sealState(testStateKey, oauthState{Provider: "google", State: "s", Verifier: "v", Role: authn.Client, Expires: now.Add(time.Minute).Unix()})
	other := &Service{a: s.a, cfg: Config{StateKey: []byte("another state key, 16+")}}
	payload, sig, _ := strings.Cut(tok, ".")
	for name, bad := range map[string]string{"state cookie": st, "tampered": "e30." + sig, "no mac": payload, "empty": ""} {
		if _, err := s.openLink(bad); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if _, err := other.openLink(tok); err == nil {
		t.Error("opened under another key")
	}
	now = now.Add(LinkTTL)
	if _, err := s.openLink(tok); err == nil {
		t.Error("an expired link token opened")
	}
}
