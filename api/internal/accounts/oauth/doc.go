// Package oauth is OAuth2 sign-in for the accounts feature: Google (OpenID Connect) and GitHub
// (OAuth2 and its REST API), with state, PKCE (S256) and, for OIDC, a nonce. Use it through the
// accounts package, which declares its routes (/auth/oauth/{provider}, its callback and the Internal
// /internal/oauth-login) and serves them with HandleStart, HandleCallback and HandleInternalLogin.
//
// The flow keeps no server-side state: the start seals what the callback needs (state, PKCE
// verifier, nonce, role) in a short-lived HttpOnly cookie signed with Config.StateKey, so any node of
// any region can finish a sign-in another began. The callback exchanges the code, takes the
// provider's verified email, and asks the accounts core, through Accounts, who holds that email in
// the cross-region email directory: an existing user is signed in in their home region (here, or by
// that region's node through /internal/oauth-login), and otherwise a user is created in this region.
// Passwords, users and sessions stay the accounts core's business; this package never reads a table.
package oauth
