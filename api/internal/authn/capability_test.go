package authn

import (
	"errors"
	"testing"
)

func TestCanNeedsAVerifiedEmail(t *testing.T) {
	for _, c := range []Capability{CapCreateAPIKey, CapPostJob, CapPostReview, CapApply, CapLinkIdentity} {
		if err := (Principal{Role: Client, Method: MethodJWT}).Can(c); !errors.Is(err, ErrEmailUnverified) {
			t.Errorf("unverified %s: %v", c, err)
		}
		if err := (Principal{Role: Client, Method: MethodAPIKey, EmailVerified: true}).Can(c); err != nil {
			t.Errorf("verified %s: %v", c, err)
		}
	}
	if err := (Principal{EmailVerified: true}).Can("delete_everything"); err == nil {
		t.Error("an unknown capability is allowed")
	}
}
