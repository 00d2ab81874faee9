package accounts

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/audit"
	"github.com/8thdegree/meridian/api/internal/authn"
)

// get is a browser that shows us each redirect instead of following it (reaching the nodes, as
// browsers do, through an edge router: with a router's certificate).
func (e *env) get(t *testing.T, u string, cookie *http.Cookie) *apitest.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := e.Browser(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// oauthStart begins a sign-in at region's node and returns the state cookie and the provider URL.
func (e *env) oauthStart(t *testing.T, region, provider, query string) (*http.Cookie, *url.URL) {
	t.Helper()
	r := e.get(t, e.Nodes[region].Server.URL+"/api/v1/auth/oauth/"+provider+query, nil)
	if r.Status != http.StatusFound {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	cookies := (&http.Response{Header: r.Header}).Cookies()
	if len(cookies) != 1 || cookies[0].Name != oauth.StateCookie || !cookies[0].HttpOnly || cookies[0].MaxAge <= 0 ||
		cookies[0].SameSite != http.SameSiteLaxMode || cookies[0].Path != "/api/v1/auth/oauth/"+provider {
		t.Fatalf("start cookie: %v", r.Header["Set-Cookie"])
	}
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if !strings.HasPrefix(loc.String(), e.stub.srv.URL+"/"+provider+"/authorize") || q.Get("code_challenge_method") != "S256" ||
		q.Get("state") == "" || q.Get("redirect_uri") != redirectBase+"/api/v1/auth/oauth/"+provider+"/callback" {
		t.Fatalf("start location: %s", loc)
	}
	return cookies[0], loc
}

// oauthConsent plays the user at the provider and returns the callback URL the provider sends back.
func (e *env) oauthConsent(t *testing.T, authURL *url.URL, who stubIdentity) *url.URL {
	t.Helper()
	e.stub.Next(who)
	r := e.get(t, authURL.String(), nil)
	if r.Status != http.StatusFound {
		t.Fatalf("provider: %d %s", r.Status, r.Body)
	}
	cb, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

// oauthCallback delivers the callback to region's node (the browser reaches whichever region is near).
func (e *env) oauthCallback(t *testing.T, region string, cb *url.URL, cookie *http.Cookie) *apitest.Response {
	t.Helper()
	return e.get(t, e.Nodes[region].Server.URL+cb.Path+"?"+cb.RawQuery, cookie)
}

func (e *env) oauth(t *testing.T, startRegion, callbackRegion, provider, query string, who stubIdentity) *apitest.Response {
	t.Helper()
	cookie, authURL := e.oauthStart(t, startRegion, provider, query)
	return e.oauthCallback(t, callbackRegion, e.oauthConsent(t, authURL, who), cookie)
}

func TestOAuth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Run("google creates then signs in from any region", func(t *testing.T) {
		email := uniqueEmail(t, "google")
		who := stubIdentity{Subject: "g-" + email, Email: strings.ToUpper(email), Verified: true, Name: "Grace Hopper"}
		r := e.oauth(t, "eu-west", "eu-west", oauth.ProviderGoogle, "?role=client", who)
		var b tokenBundle
		r.JSON(t, &b)
		if r.Status != http.StatusCreated || b.User.Email != email || b.User.Role != authn.Client || b.User.Region != "eu-west" ||
			b.User.Name != "Grace Hopper" || b.AccessToken == "" || b.RefreshToken == "" || !b.User.EmailVerified {
			t.Fatalf("new google user: %d %s", r.Status, r.Body)
		}
		k := b.User.ID.KeyspaceID()
		var provider, subject string
		if err := e.pool(t, k).QueryRow(ctx, `SELECT provider, subject FROM auth.oauth_identities WHERE ksid = $1 AND user_id = $2`,
			k.Bytes(), b.User.ID.Bytes()).Scan(&provider, &subject); err != nil || provider != "google" || subject != who.Subject {
			t.Errorf("identity: %s %s %v", provider, subject, err)
		}
		var creds int
		_ = e.pool(t, k).QueryRow(ctx, `SELECT count(*) FROM auth.credentials WHERE ksid = $1`, k.Bytes()).Scan(&creds)
		if creds != 0 {
			t.Error("an OAuth-only user has a password")
		}
		// Again, started in one region and finished in another, neither of them home.
		r = e.oauth(t, "us-east", "ap-south", oauth.ProviderGoogle, "", who)
		var b2 tokenBundle
		r.JSON(t, &b2)
		if r.Status != http.StatusOK || b2.User.ID != b.User.ID || b2.User.Role != authn.Client {
			t.Fatalf("returning google user: %d %s", r.Status, r.Body)
		}
		if me := e.Do(t, "eu-west", apitest.Request{Method: "GET", Path: "/api/v1/users/me", Token: b2.AccessToken}); me.Status != 200 {
			t.Errorf("token of the OAuth login: %d", me.Status)
		}
		got := e.actions(t, k)
		if count(got, audit.ActionRegister) != 1 || count(got, audit.ActionOAuthLogin) != 2 {
			t.Errorf("audit: %v", got)
		}
		// No password: password login fails like any wrong password.
		if r := e.login(t, "eu-west", email, "any password at all", clientIP()); r.Status != 401 {
			t.Errorf("password login of an OAuth user: %d", r.Status)
		}
	})

	t.Run("the takeover and a pre-registered password account never linked", func(t *testing.T) {
		victim := uniqueEmail(t, "victim")
		// The attacker registers the victim's address with a password, in another region than the
		// one the victim will sign in from. Nothing proves the address: the account is unverified.
		attacker := e.register(t, "ap-south", victim, authn.Freelancer)
		k := attacker.User.ID.KeyspaceID()
		who := stubIdentity{Subject: "g-victim-" + victim, Email: victim, Verified: true, Name: "Victim"}
		r := e.oauth(t, "us-east", "us-east", oauth.ProviderGoogle, "", who)
		if r.Status != http.StatusConflict || errorCode(t, r) != "account_exists" || strings.Contains(string(r.Body), "access_token") {
			t.Fatalf("google sign-in over a pre-registered address: %d %s", r.Status, r.Body)
		}
		linkTok := linkToken(t, r)
		var n int
		if err := e.pool(t, k).QueryRow(ctx, `SELECT count(*) FROM auth.oauth_identities WHERE ksid = $1 AND user_id = $2`, k.Bytes(), attacker.User.ID.Bytes()).Scan(&n); err != nil || n != 0 {
			t.Fatalf("identities linked to the attacker's account: %d %v", n, err)
		}
		if got := e.actions(t, k); count(got, audit.ActionOAuthLogin) != 0 {
			t.Errorf("an OAuth session was opened on the attacker's account: %v", got)
		}
		// The victim's sign-in again, finished in the attacker's home region: still nothing.
		if r := e.oauth(t, "eu-west", "ap-south", oauth.ProviderGoogle, "", who); r.Status != http.StatusConflict {
			t.Errorf("second sign-in: %d %s", r.Status, r.Body)
		}
		// Even holding the link token and the password, the attacker cannot link: the account is unverified.
		if r := e.link(t, "ap-south", oauth.ProviderGoogle, attacker.AccessToken, linkTok, testPassword); r.Status != http.StatusForbidden || errorCode(t, r) != "email_unverified" {
			t.Errorf("link by the unverified squatter: %d %s", r.Status, r.Body)
		}
		// A password login is the attacker's own account, with no identity in it.
		if r := e.login(t, "us-east", victim, testPassword, clientIP()); r.Status != http.StatusOK {
			t.Errorf("attacker login: %d", r.Status)
		}
		if err := e.pool(t, k).QueryRow(ctx, `SELECT count(*) FROM auth.oauth_identities WHERE ksid = $1`, k.Bytes()).Scan(&n); err != nil || n != 0 {
			t.Errorf("identities after the attempts: %d %v", n, err)
		}
	})

	t.Run("linking a provider to a verified password account needs its password", func(t *testing.T) {
		email := uniqueEmail(t, "link")
		owner := e.registerVerified(t, "ap-south", email, authn.Freelancer)
		who := stubIdentity{GitHubID: 4242_000 + seq.Add(1), Login: "octo", Email: email, Verified: true}
		r := e.oauth(t, "us-east", "us-east", oauth.ProviderGitHub, "?role=client", who)
		if r.Status != http.StatusConflict || errorCode(t, r) != "account_exists" {
			t.Fatalf("github sign-in of an existing verified account: %d %s", r.Status, r.Body)
		}
		tok := linkToken(t, r)
		for name, tc := range map[string]struct {
			region, provider, access, token, password string
			status                                    int
		}{
			"no access token":  {"ap-south", oauth.ProviderGitHub, "", tok, testPassword, http.StatusUnauthorized},
			"wrong password":   {"ap-south", oauth.ProviderGitHub, owner.AccessToken, tok, "not the password", http.StatusUnauthorized},
			"no password":      {"ap-south", oauth.ProviderGitHub, owner.AccessToken, tok, "", http.StatusUnauthorized},
			"other provider":   {"ap-south", oauth.ProviderGoogle, owner.AccessToken, tok, testPassword, http.StatusBadRequest},
			"tampered token":   {"ap-south", oauth.ProviderGitHub, owner.AccessToken, "x" + tok[1:], testPassword, http.StatusBadRequest},
			"unknown provider": {"ap-south", "myspace", owner.AccessToken, tok, testPassword, http.StatusNotFound},
		} {
			if r := e.link(t, tc.region, tc.provider, tc.access, tc.token, tc.password); r.Status != tc.status {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		// Another verified account cannot take the identity: the provider vouched for another email.
		other := e.registerVerified(t, "us-east", uniqueEmail(t, "other"), authn.Client)
		if r := e.link(t, "us-east", oauth.ProviderGitHub, other.AccessToken, tok, testPassword); r.Status != http.StatusForbidden {
			t.Errorf("link to an account of another email: %d %s", r.Status, r.Body)
		}
		if r := e.link(t, "ap-south", oauth.ProviderGitHub, owner.AccessToken, tok, testPassword); r.Status != http.StatusNoContent {
			t.Fatalf("link: %d %s", r.Status, r.Body)
		}
		k := owner.User.ID.KeyspaceID()
		var subject string
		if err := e.pool(t, k).QueryRow(ctx, `SELECT subject FROM auth.oauth_identities WHERE ksid = $1 AND provider = 'github'`, k.Bytes()).Scan(&subject); err != nil || subject != strconvI(who.GitHubID) {
			t.Errorf("github identity: %q %v", subject, err)
		}
		// Now GitHub signs in to the account, from any region, by (provider, subject).
		r = e.oauth(t, "eu-west", "eu-west", oauth.ProviderGitHub, "", who)
		var b tokenBundle
		r.JSON(t, &b)
		if r.Status != http.StatusOK || b.User.ID != owner.User.ID || b.User.Role != authn.Freelancer || !b.User.EmailVerified {
			t.Fatalf("github sign-in after linking: %d %s", r.Status, r.Body)
		}
		// The password still works too.
		if r := e.login(t, "us-east", email, testPassword, clientIP()); r.Status != 200 {
			t.Errorf("password after linking: %d", r.Status)
		}
		got := e.actions(t, k)
		if count(got, audit.ActionOAuthLinked) != 1 || count(got, audit.ActionOAuthLogin) != 1 {
			t.Errorf("audit: %v", got)
		}
		// An expired link token.
		r = e.oauth(t, "us-east", "us-east", oauth.ProviderGoogle, "", stubIdentity{Subject: "g-late-" + email, Email: email, Verified: true})
		late := linkToken(t, r)
		e.clock.Advance(oauth.LinkTTL + 1)
		r = e.link(t, "ap-south", oauth.ProviderGoogle, owner.AccessToken, late, testPassword)
		e.clock.Advance(-oauth.LinkTTL - 1)
		if r.Status != http.StatusBadRequest {
			t.Errorf("expired link token: %d %s", r.Status, r.Body)
		}

		// A new GitHub user without a name gets the login as name and the default role, verified.
		email2 := uniqueEmail(t, "github-new")
		r = e.oauth(t, "ap-south", "ap-south", oauth.ProviderGitHub, "", stubIdentity{GitHubID: 77_000 + seq.Add(1), Login: "newbie", Email: email2, Verified: true})
		r.JSON(t, &b)
		if r.Status != http.StatusCreated || b.User.Name != "newbie" || b.User.Role != authn.Freelancer || b.User.Region != "ap-south" || !b.User.EmailVerified {
			t.Errorf("new github user: %d %s", r.Status, r.Body)
		}
		if len(e.inbox(t, email2)) != 0 {
			t.Error("a provider-verified user was mailed a verification link")
		}
	})

	t.Run("a signed-in identity follows its subject and not the email", func(t *testing.T) {
		email := uniqueEmail(t, "subject")
		who := stubIdentity{Subject: "g-subj-" + email, Email: email, Verified: true}
		r := e.oauth(t, "us-east", "us-east", oauth.ProviderGoogle, "", who)
		var b tokenBundle
		r.JSON(t, &b)
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		// The provider account's address changes: the same subject still signs in to the same user.
		who.Email = uniqueEmail(t, "renamed")
		r = e.oauth(t, "ap-south", "ap-south", oauth.ProviderGoogle, "", who)
		var b2 tokenBundle
		r.JSON(t, &b2)
		if r.Status != http.StatusOK || b2.User.ID != b.User.ID {
			t.Fatalf("same subject, new email: %d %s", r.Status, r.Body)
		}
		// Another subject asserting the first address does not get in.
		r = e.oauth(t, "ap-south", "ap-south", oauth.ProviderGoogle, "", stubIdentity{Subject: "g-other-" + email, Email: email, Verified: true})
		if r.Status != http.StatusConflict {
			t.Errorf("another subject with the address: %d %s", r.Status, r.Body)
		}
	})

	t.Run("a forwarded sign-in needs the provider's proof", func(t *testing.T) {
		// A Google user and a GitHub user, both homed in eu-west.
		gEmail := uniqueEmail(t, "proof-google")
		gWho := stubIdentity{Subject: "g-proof-" + gEmail, Email: gEmail, Verified: true}
		var gb, hb tokenBundle
		if r := e.oauth(t, "eu-west", "eu-west", oauth.ProviderGoogle, "", gWho); r.Status != http.StatusCreated {
			t.Fatalf("create google user: %d %s", r.Status, r.Body)
		} else {
			r.JSON(t, &gb)
		}
		hEmail := uniqueEmail(t, "proof-github")
		hWho := stubIdentity{GitHubID: 88_000_000 + seq.Add(1), Login: "proof", Email: hEmail, Verified: true}
		if r := e.oauth(t, "eu-west", "eu-west", oauth.ProviderGitHub, "", hWho); r.Status != http.StatusCreated {
			t.Fatalf("create github user: %d %s", r.Status, r.Body)
		} else {
			r.JSON(t, &hb)
		}
		// An ID token of the right claims signed by a key that is not the provider's.
		otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		forged := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": e.stub.srv.URL + "/google", "aud": stubClientID, "sub": gWho.Subject, "email": gEmail, "email_verified": true,
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		})
		forged.Header["kid"] = "stub-1"
		forgedText, err := forged.SignedString(otherKey)
		if err != nil {
			t.Fatal(err)
		}
		someoneElse := stubIdentity{Subject: "g-someone-else", Email: uniqueEmail(t, "someone-else"), Verified: true}
		ghSomeoneElse := stubIdentity{GitHubID: 99_000_000 + seq.Add(1), Login: "other", Email: uniqueEmail(t, "gh-else"), Verified: true}
		ghUnverified := hWho
		ghUnverified.Verified = false

		google := func(proof map[string]string) map[string]string {
			b := map[string]string{"user_id": gb.User.ID.String(), "provider": "google", "subject": gWho.Subject, "email": gEmail}
			for k, v := range proof {
				b[k] = v
			}
			return b
		}
		github := func(proof map[string]string) map[string]string {
			b := map[string]string{"user_id": hb.User.ID.String(), "provider": "github", "subject": strconvI(hWho.GitHubID), "email": hEmail}
			for k, v := range proof {
				b[k] = v
			}
			return b
		}
		for name, body := range map[string]map[string]string{
			"google, no proof":                   google(nil),
			"google, a made-up ID token":         google(map[string]string{"id_token": "not.a.token"}),
			"google, an ID token of another key": google(map[string]string{"id_token": forgedText}),
			"google, another subject's token":    google(map[string]string{"id_token": e.stub.IDToken(someoneElse, "", nil)}),
			"google, another email":              google(map[string]string{"id_token": e.stub.IDToken(gWho, "", jwt.MapClaims{"email": someoneElse.Email})}),
			"google, another audience":           google(map[string]string{"id_token": e.stub.IDToken(gWho, "", jwt.MapClaims{"aud": "another-client"})}),
			"google, another issuer":             google(map[string]string{"id_token": e.stub.IDToken(gWho, "", jwt.MapClaims{"iss": "https://issuer.example"})}),
			"google, expired":                    google(map[string]string{"id_token": e.stub.IDToken(gWho, "", jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})}),
			"google, email not verified":         google(map[string]string{"id_token": e.stub.IDToken(gWho, "", jwt.MapClaims{"email_verified": false})}),
			"google, an access token instead":    google(map[string]string{"access_token": e.stub.AccessToken(gWho)}),
			"github, no proof":                   github(nil),
			"github, a made-up access token":     github(map[string]string{"access_token": "gho_madeup"}),
			"github, another user's token":       github(map[string]string{"access_token": e.stub.AccessToken(ghSomeoneElse)}),
			"github, email not verified":         github(map[string]string{"access_token": e.stub.AccessToken(ghUnverified)}),
			"github, an ID token instead":        github(map[string]string{"id_token": e.stub.IDToken(gWho, "", nil)}),
		} {
			r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/internal/oauth-login", Body: body, AsNode: "us-east"})
			if r.Status != http.StatusUnauthorized || strings.Contains(string(r.Body), "access_token\"") {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		for _, b := range []tokenBundle{gb, hb} {
			if got := e.actions(t, b.User.ID.KeyspaceID()); count(got, audit.ActionOAuthLogin) != 1 {
				t.Errorf("sessions opened by refused sign-ins: %v", got)
			}
		}
		// The provider's own proof signs in through the internal route (what a node does for its callback).
		for name, body := range map[string]map[string]string{
			"google": google(map[string]string{"id_token": e.stub.IDToken(gWho, "any-nonce", nil)}),
			"github": github(map[string]string{"access_token": e.stub.AccessToken(hWho)}),
		} {
			r := e.Do(t, "eu-west", apitest.Request{Method: "POST", Path: "/api/v1/internal/oauth-login", Body: body, AsNode: "us-east"})
			var b tokenBundle
			r.JSON(t, &b)
			if r.Status != http.StatusOK || b.AccessToken == "" || (b.User.ID != gb.User.ID && b.User.ID != hb.User.ID) {
				t.Errorf("%s with its proof: %d %s", name, r.Status, r.Body)
			}
		}
		// And the whole flow, finished in another region than home, still signs in.
		for _, tc := range []struct {
			provider string
			who      stubIdentity
			user     tokenBundle
		}{{oauth.ProviderGoogle, gWho, gb}, {oauth.ProviderGitHub, hWho, hb}} {
			r := e.oauth(t, "us-east", "ap-south", tc.provider, "", tc.who)
			var b tokenBundle
			r.JSON(t, &b)
			if r.Status != http.StatusOK || b.User.ID != tc.user.User.ID {
				t.Errorf("%s sign-in forwarded home: %d %s", tc.provider, r.Status, r.Body)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		// Unverified emails.
		if r := e.oauth(t, "us-east", "us-east", oauth.ProviderGoogle, "", stubIdentity{Subject: "u1", Email: uniqueEmail(t, "unverified"), Verified: false}); r.Status != 401 {
			t.Errorf("google unverified: %d %s", r.Status, r.Body)
		}
		if r := e.oauth(t, "us-east", "us-east", oauth.ProviderGitHub, "", stubIdentity{GitHubID: 5, Login: "x", Email: uniqueEmail(t, "unverified"), Verified: false}); r.Status != 401 {
			t.Errorf("github unverified primary: %d %s", r.Status, r.Body)
		}
		noPrimary := stubIdentity{GitHubID: 6, Login: "y", GitHubEmails: []map[string]any{{"email": uniqueEmail(t, "secondary"), "primary": false, "verified": true}}}
		if r := e.oauth(t, "us-east", "us-east", oauth.ProviderGitHub, "", noPrimary); r.Status != 401 {
			t.Errorf("github without a primary email: %d %s", r.Status, r.Body)
		}
		// An ID token for another sign-in (nonce mismatch).
		if r := e.oauth(t, "us-east", "us-east", oauth.ProviderGoogle, "", stubIdentity{Subject: "n1", Email: uniqueEmail(t, "nonce"), Verified: true, BadNonce: true}); r.Status != 401 {
			t.Errorf("bad nonce: %d %s", r.Status, r.Body)
		}
		who := stubIdentity{Subject: "s1", Email: uniqueEmail(t, "state"), Verified: true}

		cookie, authURL := e.oauthStart(t, "us-east", oauth.ProviderGoogle, "")
		cb := e.oauthConsent(t, authURL, who)
		q := cb.Query()
		q.Set("state", "forged-state")
		forged := *cb
		forged.RawQuery = q.Encode()
		if r := e.oauthCallback(t, "us-east", &forged, cookie); r.Status != 400 {
			t.Errorf("bad state: %d %s", r.Status, r.Body)
		}
		if r := e.oauthCallback(t, "us-east", cb, nil); r.Status != 400 {
			t.Errorf("no cookie: %d %s", r.Status, r.Body)
		}
		tampered := *cookie
		tampered.Value = "x" + cookie.Value[1:]
		if r := e.oauthCallback(t, "us-east", cb, &tampered); r.Status != 400 {
			t.Errorf("tampered cookie: %d %s", r.Status, r.Body)
		}
		// Another flow's cookie (its PKCE verifier and state do not match this code).
		otherCookie, _ := e.oauthStart(t, "us-east", oauth.ProviderGoogle, "")
		if r := e.oauthCallback(t, "us-east", cb, otherCookie); r.Status != 400 {
			t.Errorf("another flow's cookie: %d %s", r.Status, r.Body)
		}
		// A github cookie on the google callback.
		ghCookie, _ := e.oauthStart(t, "us-east", oauth.ProviderGitHub, "")
		if r := e.oauthCallback(t, "us-east", cb, ghCookie); r.Status != 400 {
			t.Errorf("cookie of another provider: %d %s", r.Status, r.Body)
		}
		// The untouched callback still works once, and the code cannot be replayed.
		if r := e.oauthCallback(t, "us-east", cb, cookie); r.Status != http.StatusCreated {
			t.Errorf("good callback: %d %s", r.Status, r.Body)
		}
		if r := e.oauthCallback(t, "us-east", cb, cookie); r.Status != 401 {
			t.Errorf("replayed code: %d %s", r.Status, r.Body)
		}
		// Expired state.
		cookie, authURL = e.oauthStart(t, "us-east", oauth.ProviderGoogle, "")
		cb = e.oauthConsent(t, authURL, who)
		e.clock.Advance(oauth.StateTTL + 1)
		r := e.oauthCallback(t, "us-east", cb, cookie)
		e.clock.Advance(-oauth.StateTTL - 1)
		if r.Status != 400 {
			t.Errorf("expired state: %d %s", r.Status, r.Body)
		}
		// The user said no at the provider.
		cookie, authURL = e.oauthStart(t, "us-east", oauth.ProviderGoogle, "")
		denied := url.Values{"error": {"access_denied"}, "state": {authURL.Query().Get("state")}}
		if r := e.oauthCallback(t, "us-east", &url.URL{Path: "/api/v1/auth/oauth/google/callback", RawQuery: denied.Encode()}, cookie); r.Status != 401 {
			t.Errorf("denied: %d %s", r.Status, r.Body)
		}
		for name, path := range map[string]string{
			"unknown provider":          "/api/v1/auth/oauth/myspace",
			"unknown provider callback": "/api/v1/auth/oauth/myspace/callback?code=x&state=y",
		} {
			if r := e.get(t, e.Nodes["us-east"].Server.URL+path, nil); r.Status != 404 {
				t.Errorf("%s: %d", name, r.Status)
			}
		}
		if r := e.get(t, e.Nodes["us-east"].Server.URL+"/api/v1/auth/oauth/google?role=admin", nil); r.Status != 400 {
			t.Errorf("admin role: %d", r.Status)
		}
	})
}

// link posts a link token to /auth/oauth/{provider}/link with access as the bearer token.
func (e *env) link(t *testing.T, region, provider, access, token, password string) *apitest.Response {
	t.Helper()
	return e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/oauth/" + provider + "/link", Token: access,
		Body: map[string]string{"link_token": token, "password": password}, Header: fromIP(clientIP())})
}

// linkToken reads error.details.link_token of a 409 account_exists.
func linkToken(t *testing.T, r *apitest.Response) string {
	t.Helper()
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Details struct {
				Provider  string `json:"provider"`
				LinkToken string `json:"link_token"`
				LinkURL   string `json:"link_url"`
				ExpiresIn int64  `json:"expires_in"`
			} `json:"details"`
		} `json:"error"`
	}
	r.JSON(t, &body)
	d := body.Error.Details
	if body.Error.Code != "account_exists" || d.LinkToken == "" || d.LinkURL != "/api/v1/auth/oauth/"+d.Provider+"/link" || d.ExpiresIn != int64(oauth.LinkTTL/time.Second) {
		t.Fatalf("account_exists answer: %d %s", r.Status, r.Body)
	}
	return d.LinkToken
}

func strconvI(n int64) string { return strconv.FormatInt(n, 10) }
