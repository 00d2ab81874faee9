package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Ending a session ends its access tokens through every router, well before they expire: logout ends
// one session, log out everywhere ends the rest, and a session that did not end keeps working.
func TestE2ELogoutEndsAccessTokensEverywhere(t *testing.T) {
	e := startE2E(t)
	email := fmt.Sprintf("revoke-%d@e2e.test", time.Now().UnixNano())
	const password = "e2e password 0123"
	reg := e.do(t, "us-east", "POST", "/api/v1/auth/register", "", map[string]any{
		"email": email, "password": password, "name": "E2E revoke", "role": "freelancer", "region": "eu-west"})
	if reg.status != http.StatusCreated {
		t.Fatalf("register: %d %v", reg.status, reg.body)
	}
	login := func(via string) (access, refresh string) {
		r := e.do(t, via, "POST", "/api/v1/auth/login", "", map[string]any{"email": email, "password": password})
		if r.status != http.StatusOK {
			t.Fatalf("login via %s: %d %v", via, r.status, r.body)
		}
		return r.body["access_token"].(string), r.body["refresh_token"].(string)
	}
	a1, r1 := reg.body["access_token"].(string), reg.body["refresh_token"].(string)
	a2, _ := login("ap-south")
	a3, _ := login("us-east")
	routers := []string{"us-east", "eu-west", "ap-south"}
	for _, via := range routers {
		for _, tok := range []string{a1, a2, a3} {
			if r := e.do(t, via, "GET", "/api/v1/users/me", tok, nil); r.status != http.StatusOK {
				t.Fatalf("before logout via %s: %d %v", via, r.status, r.body)
			}
		}
	}
	// ended waits (boundedly: revocation is meant to reach every node within about a second) until
	// tok is refused through every router, twice in a row (the second answer is the router's own).
	ended := func(tok, what string) {
		t.Helper()
		for _, via := range routers {
			deadline := time.Now().Add(5 * time.Second)
			for {
				r1 := e.do(t, via, "GET", "/api/v1/users/me", tok, nil)
				r2 := e.do(t, via, "GET", "/api/v1/users/me", tok, nil)
				if r1.status == http.StatusUnauthorized && r2.status == http.StatusUnauthorized {
					if r2.header.Get("X-Meridian-Token-Revoked") != "" {
						t.Errorf("%s via %s: the internal header reached the client", what, via)
					}
					break
				}
				if r1.status != http.StatusOK || time.Now().After(deadline) {
					t.Fatalf("%s via %s: %d then %d %v, want 401", what, via, r1.status, r2.status, r2.body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	if r := e.do(t, "ap-south", "POST", "/api/v1/auth/logout", "", map[string]any{"refresh_token": r1}); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %v", r.status, r.body)
	}
	ended(a1, "the logged-out session")
	for _, via := range routers {
		if r := e.do(t, via, "GET", "/api/v1/users/me", a2, nil); r.status != http.StatusOK {
			t.Errorf("another session after logout via %s: %d %v", via, r.status, r.body)
		}
	}
	if r := e.do(t, "us-east", "POST", "/api/v1/auth/logout-all", a2, nil); r.status != http.StatusNoContent {
		t.Fatalf("logout-all: %d %v", r.status, r.body)
	}
	ended(a2, "the session that logged out everywhere")
	ended(a3, "another session after log out everywhere")
	a4, _ := login("eu-west")
	for _, via := range routers {
		if r := e.do(t, via, "GET", "/api/v1/users/me", a4, nil); r.status != http.StatusOK {
			t.Errorf("a new session via %s: %d %v", via, r.status, r.body)
		}
	}
}
