package accounts

import (
	"net/http"

	"github.com/8thdegree/meridian/api/internal/openapi"

	"github.com/8thdegree/meridian/api/internal/feature"
)

// Routes returns the accounts endpoints, the Internal ones of the email directory and forwarded
// logins included.
func (s *Service) Routes() []feature.Route {
	routes := s.routes()
	if !s.cfg.DisableAPIKeys {
		return routes
	}
	kept := routes[:0]
	for _, r := range routes {
		if !isAPIKeyRoute(r.Name) {
			kept = append(kept, r)
		}
	}
	return kept
}

// isAPIKeyRoute names the routes that manage API keys, which Config.DisableAPIKeys takes away.
func isAPIKeyRoute(name string) bool {
	switch name {
	case "createAPIKey", "listAPIKeys", "revokeAPIKey":
		return true
	}
	return false
}

func (s *Service) routes() []feature.Route {
	return []feature.Route{
		{Name: "registerUser", Method: http.MethodPost, Path: "/auth/register", Access: feature.Public, Handler: s.handleRegister, Doc: op(
			"Create an account",
			"Creates a user homed in `region` (default: the region that took the request) with a password, and signs them in. "+
				"The email must be unique across all regions. A request for another region's home is answered with 421 and "+
				"`X-Meridian-Replay-Region`; the edge router replays it there. The account starts with `email_verified: false` "+
				"and a verification link is mailed to the address (POST /auth/verify-email); until it is verified the account "+
				"may log in but not create API keys, post jobs or reviews, apply, or link a sign-in provider.",
			nil, openapi.JSONBody("RegisterRequest"),
			resp("201", "The new user and their tokens.", "TokenBundle"),
			errs("400", "409", "415", "421", "503"))},
		{Name: "login", Method: http.MethodPost, Path: "/auth/login", Access: feature.Public, Handler: s.handleLogin, Doc: op(
			"Log in with email and password",
			"Works in any region: the email directory says where the user lives and the password is checked there. "+
				"Repeated failures, per email and per client address, are answered with 429 and Retry-After.",
			nil, openapi.JSONBody("LoginRequest"),
			resp("200", "The user and a new token pair.", "TokenBundle"),
			errs("400", "401", "415", "429", "503"))},
		{Name: "refreshTokens", Method: http.MethodPost, Path: "/auth/refresh", Access: feature.Public, Handler: s.handleRefresh, Doc: op(
			"Rotate a refresh token",
			"Returns a new access token and the next refresh token of the same family; the presented one becomes used. "+
				"Presenting a used refresh token revokes its whole family (every session descended from that login).",
			nil, openapi.JSONBody("RefreshRequest"),
			resp("200", "The user and a new token pair.", "TokenBundle"),
			errs("400", "401", "415", "421"))},
		{Name: "logout", Method: http.MethodPost, Path: "/auth/logout", Access: feature.Public, Handler: s.handleLogout, Doc: op(
			"Log out",
			"Revokes the refresh-token family of the presented token: its refresh tokens no longer rotate and, within about a second, "+
				"the session's access tokens are refused on every node and router (401). Idempotent.",
			nil, openapi.JSONBody("RefreshRequest"),
			noContent("The session is over."),
			errs("400", "415", "421"))},
		{Name: "logoutAll", Method: http.MethodPost, Path: "/auth/logout-all", Access: feature.Authenticated, Handler: s.handleLogoutAll, Doc: op(
			"Log out everywhere",
			"Ends every session of the caller: no refresh token of theirs rotates again and, within about a second, none of their "+
				"access tokens passes (this one included). API keys are separate credentials and stay valid; revoke them with "+
				"DELETE /auth/api-keys/{id}. Needs an access token (an API key gets 403).",
			nil, nil,
			noContent("Every session is over."),
			errs("401", "403", "421"))},
		{Name: "oauthStart", Method: http.MethodGet, Path: "/auth/oauth/{provider}", Access: feature.Public, Handler: s.oauth.HandleStart, Doc: op(
			"Start an OAuth sign-in",
			"Redirects to the provider (google: OpenID Connect; github: OAuth2) with state and a PKCE S256 challenge, kept "+
				"in a signed, short-lived HttpOnly cookie. `role` is the role of a user created by this sign-in.",
			[]any{openapi.PathParam("provider", "google or github"), queryParam("role", "client or freelancer (default freelancer), for new users", "string")}, nil,
			map[string]any{"302": map[string]any{"description": "Redirect to the provider.", "headers": map[string]any{"Location": map[string]any{"schema": map[string]any{"type": "string"}}}}},
			errs("400", "404"))},
		{Name: "oauthCallback", Method: http.MethodGet, Path: "/auth/oauth/{provider}/callback", Access: feature.Public, Handler: s.oauth.HandleCallback, Doc: op(
			"Finish an OAuth sign-in",
			"The provider redirects here. The state must match the cookie; the code is exchanged with the PKCE verifier; the "+
				"provider's identity (provider, subject) finds the user it is linked to, in any region. An identity linked to "+
				"nobody whose provider-verified email an account already holds links nothing and signs nobody in: 409 "+
				"`account_exists` with `error.details.link_token`, which the account's owner posts to /auth/oauth/{provider}/link. "+
				"Otherwise a user is created in this region, verified (the provider verified the email). The provider must "+
				"assert the email as verified (Google's `email_verified`, GitHub's verified primary email), else 401.",
			[]any{openapi.PathParam("provider", "google or github"), queryParam("code", "authorisation code", "string"), queryParam("state", "state from the start", "string")}, nil,
			merge(resp("200", "An existing user signed in.", "TokenBundle"), resp("201", "A new user was created and signed in.", "TokenBundle")),
			errs("400", "401", "404", "409", "502", "503"))},
		{Name: "oauthLink", Method: http.MethodPost, Path: "/auth/oauth/{provider}/link", Access: feature.Authenticated, Handler: s.oauth.HandleLink, Doc: op(
			"Link a sign-in provider to your account",
			"Spends the link token of a callback's 409 `account_exists` (valid 10 minutes): links that provider identity to the "+
				"caller's account. Needs an access token (not an API key) of a verified account whose email is the one the "+
				"provider vouched for, and the account's password when it has one (401 `invalid_credentials` otherwise; failures "+
				"count against the login budget). An identity linked to another account is 409 `identity_taken`.",
			[]any{openapi.PathParam("provider", "google or github")}, openapi.JSONBody("OAuthLinkRequest"),
			noContent("Linked: signing in with this provider now signs in to this account."),
			errs("400", "401", "403", "404", "409", "415", "429", "503"))},
		{Name: "verifyEmail", Method: http.MethodPost, Path: "/auth/verify-email", Access: feature.Public, Handler: s.handleVerifyEmail, Doc: op(
			"Verify an email address",
			"Spends the token of a verification mail's link: the account's email becomes verified. A link works once, for "+
				"24 hours, and only its user's newest link works; an invalid, tampered, expired, used or replaced token is 400 "+
				"`invalid_verification_token`. The token names its user, so a node of another region answers 421 and the edge "+
				"router replays the request in the user's home region. Access tokens issued before carry `email_verified: false` "+
				"until refreshed (POST /auth/refresh).",
			nil, openapi.JSONBody("VerifyEmailRequest"),
			noContent("Verified."),
			errs("400", "415", "421", "503"))},
		{Name: "resendVerification", Method: http.MethodPost, Path: "/auth/verify-email/resend", Access: feature.Authenticated, Handler: s.handleResendVerification, Doc: op(
			"Mail a new verification link",
			"Mails a new link to the caller's own address and voids the older unused ones. At most 3 mails an hour per user "+
				"(429 with Retry-After and RateLimit-* headers). An account already verified is 409 `email_already_verified`; a "+
				"mail server that refuses the mail is 503 with Retry-After.",
			nil, nil,
			map[string]any{"202": map[string]any{"description": "The mail was handed to the mail server."}},
			errs("401", "409", "421", "429", "503"))},
		{Name: "createAPIKey", Method: http.MethodPost, Path: "/auth/api-keys", Access: feature.Authenticated, Handler: s.handleCreateAPIKey, Doc: op(
			"Create an API key",
			"The key is in this answer only; it is stored as a hash. Use it as `Authorization: ApiKey <key>`. "+
				"API keys are managed with an access token only, of an account whose email is verified (403 `email_unverified`). "+
				"A key outlives the session, so creating one needs a "+
				"login (or OAuth sign-in) in the last 10 minutes, or the account's password in the request: else "+
				"401 reauthentication_required. The key records the session that created it, and may carry an expiry.",
			nil, openapi.JSONBody("APIKeyCreateRequest"),
			resp("201", "The key, shown once.", "APIKeyCreated"),
			errs("400", "401", "403", "409", "415"))},
		{Name: "listAPIKeys", Method: http.MethodGet, Path: "/auth/api-keys", Access: feature.Authenticated, Handler: s.handleListAPIKeys, Doc: op(
			"List your API keys",
			"Unrevoked keys, newest first, without the keys themselves.",
			[]any{queryParam("limit", "page size, 1 to 100 (default 20)", "integer"), queryParam("cursor", "next_cursor of the previous page", "string")}, nil,
			resp("200", "A page of keys.", "APIKeyPage"),
			errs("400", "401", "403"))},
		{Name: "revokeAPIKey", Method: http.MethodDelete, Path: "/auth/api-keys/{id}", Access: feature.Authenticated, Handler: s.handleRevokeAPIKey, Doc: op(
			"Revoke an API key",
			"The key stops working at once. Revoking a revoked key is fine; another user's key is not found.",
			[]any{openapi.PathParam("id", "API key ID (key_…)")}, nil,
			noContent("Revoked."),
			errs("400", "401", "403", "404"))},
		{Name: "getMe", Method: http.MethodGet, Path: "/users/me", Access: feature.Authenticated, Scope: ScopeProfileRead, Handler: s.handleMe, Doc: op(
			"The caller's account",
			"Needs the profile:read scope with an API key.",
			nil, nil,
			resp("200", "The caller.", "User"),
			errs("401", "403", "404", "421"))},
		{Name: "getJWKS", Method: http.MethodGet, Path: "/auth/jwks.json", Access: feature.Public, Handler: s.handleJWKS, Doc: op(
			"Access-token verification keys",
			"The Ed25519 public keys (JWKS, RFC 7517/8037) that access tokens are signed with, by kid.",
			nil, nil,
			resp("200", "The key set.", "JWKS"),
			nil)},

		// Node-to-node: the email directory and logins forwarded to the home region.
		{Name: "internalClaimEmail", Method: http.MethodPost, Path: "/internal/email-claims", Access: feature.Internal, Handler: s.dir.HandleClaim, Doc: internalOp(
			"Claim an email hash in this directory region", openapi.JSONBody("EmailClaimRequest"), resp("200", "Claimed (or already held by the same user).", ""), errs("400", "409", "503"))},
		{Name: "internalLookupEmail", Method: http.MethodGet, Path: "/internal/email-claims/{hash}", Access: feature.Internal, Handler: s.dir.HandleLookup, Doc: internalOp(
			"Look up the claim of an email hash", nil, resp("200", "The claim.", "EmailClaim"), errs("400", "404"), openapi.PathParam("hash", "64 hex digits"))},
		{Name: "internalReleaseEmail", Method: http.MethodDelete, Path: "/internal/email-claims/{hash}", Access: feature.Internal, Handler: s.dir.HandleRelease, Doc: internalOp(
			"Release a claim held by user_id", nil, noContent("Released (or not held by that user)."), errs("400"), openapi.PathParam("hash", "64 hex digits"), queryParam("user_id", "the holder", "string"))},
		{Name: "internalUserExists", Method: http.MethodGet, Path: "/internal/users/{id}/exists", Access: feature.Internal, Handler: s.handleUserExists, Doc: internalOp(
			"Whether a user homed here exists", nil, resp("200", "{exists: bool}", ""), errs("400", "421"), openapi.PathParam("id", "user ID"))},
		{Name: "internalLogin", Method: http.MethodPost, Path: "/internal/login", Access: feature.Internal, Handler: s.handleInternalLogin, Doc: internalOp(
			"Check a password in the user's home region", openapi.JSONBody("InternalLoginRequest"), resp("200", "The outcome (ok, invalid_credentials, rate_limited) and, if ok, the bundle.", ""), errs("400", "503"))},
		{Name: "internalOAuthLogin", Method: http.MethodPost, Path: "/internal/oauth-login", Access: feature.Internal, Handler: s.oauth.HandleInternalLogin, Doc: internalOp(
			"Sign in an OAuth identity in the user's home region, which verifies the provider's proof itself", openapi.JSONBody("InternalOAuthRequest"), resp("200", "The bundle.", "TokenBundle"), errs("400", "401", "403", "404", "409", "502", "503"))},
	}
}
