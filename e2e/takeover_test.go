package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/e2e/cluster"
)

// noFollow is a browser that shows each redirect instead of following it.
var noFollow = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// googleSignIn plays a browser signing in with Google: the start through router via, the consent at
// the stand-in provider as who, and the callback through router back (browsers reach the nearest
// region, which need not be the one that started).
func (e *e2e) googleSignIn(t *testing.T, via, back string, who cluster.OIDCIdentity) reply {
	t.Helper()
	resp, err := noFollow.Get(e.routers[via] + "/api/v1/auth/oauth/google")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusFound || len(cookies) != 1 {
		t.Fatalf("oauth start via %s: %d %v", via, resp.StatusCode, resp.Header)
	}
	e.cluster.Google.Next(who)
	resp, err = noFollow.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(cb.String(), cluster.PublicURL+"/api/v1/auth/oauth/google/callback?") {
		t.Fatalf("provider: %d %s %v", resp.StatusCode, resp.Header.Get("Location"), err)
	}
	req, _ := http.NewRequest(http.MethodGet, e.routers[back]+cb.Path+"?"+cb.RawQuery, nil)
	req.AddCookie(cookies[0])
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header}
	r.body = decode(data)
	return r
}

func errCode(r reply) string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func linkTokenOf(t *testing.T, r reply) string {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	tok, _ := d["link_token"].(string)
	if r.status != http.StatusConflict || errCode(r) != "account_exists" || tok == "" {
		t.Fatalf("want 409 account_exists with a link token: %d %v", r.status, r.body)
	}
	return tok
}

// The OAuth takeover, through the edge routers of three regions: an attacker registers the victim's
// address with a password in one region; the victim signs in with Google (which vouches for the
// address) in another. The victim's identity is never linked to the attacker's account and no session
// is opened on it; only the verified owner of an account, with its password, links a provider to it.
func TestE2EOAuthTakeoverIsRefused(t *testing.T) {
	e := startE2E(t)
	victim := fmt.Sprintf("victim-%d@corp.test", time.Now().UnixNano())
	reg := e.do(t, "ap-south", "POST", "/api/v1/auth/register", "", map[string]any{
		"email": victim, "password": "attacker's password", "name": "Not the victim", "role": "client", "region": "eu-west"})
	if reg.status != http.StatusCreated {
		t.Fatalf("attacker registers: %d %v", reg.status, reg.body)
	}
	attackerTok := reg.body["access_token"].(string)
	attackerID := reg.body["user"].(map[string]any)["id"].(string)

	who := cluster.OIDCIdentity{Subject: "google-" + victim, Email: victim, EmailVerified: true, Name: "Victim"}
	r := e.googleSignIn(t, "us-east", "us-east", who)
	if _, leaked := r.body["access_token"]; leaked || r.status != http.StatusConflict {
		t.Fatalf("victim's Google sign-in over the pre-registered address: %d %v", r.status, r.body)
	}
	tok := linkTokenOf(t, r)
	// Even with the victim's link token (say it leaked) and the password, the unverified account
	// links nothing.
	link := e.do(t, "ap-south", "POST", "/api/v1/auth/oauth/google/link", attackerTok, map[string]any{"link_token": tok, "password": "attacker's password"})
	if link.status != http.StatusForbidden || errCode(link) != "email_unverified" {
		t.Fatalf("link by the squatter: %d %v", link.status, link.body)
	}
	// The victim signs in again, finishing in the attacker's home region: still no session there.
	if r := e.googleSignIn(t, "eu-west", "eu-west", who); r.status != http.StatusConflict {
		t.Fatalf("second sign-in: %d %v", r.status, r.body)
	}
	// The attacker's password session is their own account, unverified, with nothing the victim did.
	login := e.do(t, "us-east", "POST", "/api/v1/auth/login", "", map[string]any{"email": victim, "password": "attacker's password"})
	me := e.do(t, "us-east", "GET", "/api/v1/users/me", login.body["access_token"].(string), nil)
	if me.status != http.StatusOK || me.body["id"] != attackerID || me.body["email_verified"] != false {
		t.Fatalf("attacker's account: %d %v", me.status, me.body)
	}

	// A real owner: registered in ap-south, verified through the eu-west router (replayed home),
	// Google linked with the password, then Google signs in from a third region.
	owner := fmt.Sprintf("owner-%d@corp.test", time.Now().UnixNano())
	reg = e.do(t, "ap-south", "POST", "/api/v1/auth/register", "", map[string]any{
		"email": owner, "password": "the owner's password", "name": "Owner", "role": "freelancer", "region": "ap-south"})
	if reg.status != http.StatusCreated {
		t.Fatalf("owner registers: %d %v", reg.status, reg.body)
	}
	ownerID := reg.body["user"].(map[string]any)["id"].(string)
	vt, err := e.cluster.VerificationToken(owner)
	if err != nil {
		t.Fatal(err)
	}
	if v := e.do(t, "eu-west", "POST", "/api/v1/auth/verify-email", "", map[string]any{"token": vt}); v.status != http.StatusNoContent {
		t.Fatalf("verify through another region's router: %d %v", v.status, v.body)
	}
	if v := e.do(t, "us-east", "POST", "/api/v1/auth/verify-email", "", map[string]any{"token": vt}); v.status != http.StatusBadRequest {
		t.Fatalf("the link used again through a third router: %d %v", v.status, v.body)
	}
	ownerWho := cluster.OIDCIdentity{Subject: "google-" + owner, Email: owner, EmailVerified: true, Name: "Owner"}
	tok = linkTokenOf(t, e.googleSignIn(t, "us-east", "eu-west", ownerWho))
	session := e.do(t, "us-east", "POST", "/api/v1/auth/login", "", map[string]any{"email": owner, "password": "the owner's password"})
	access, _ := session.body["access_token"].(string)
	if link := e.do(t, "eu-west", "POST", "/api/v1/auth/oauth/google/link", access, map[string]any{"link_token": tok, "password": "wrong password"}); link.status != http.StatusUnauthorized {
		t.Fatalf("link with a wrong password: %d %v", link.status, link.body)
	}
	if link := e.do(t, "eu-west", "POST", "/api/v1/auth/oauth/google/link", access, map[string]any{"link_token": tok, "password": "the owner's password"}); link.status != http.StatusNoContent {
		t.Fatalf("link: %d %v", link.status, link.body)
	}
	r = e.googleSignIn(t, "us-east", "us-east", ownerWho)
	user, _ := r.body["user"].(map[string]any)
	if r.status != http.StatusOK || user["id"] != ownerID || user["region"] != "ap-south" {
		t.Fatalf("Google sign-in after linking: %d %v", r.status, r.body)
	}
}

func decode(data []byte) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return m
}
