// Package oauth is OAuth2 sign-in for the accounts feature: Google (OpenID Connect) and GitHub
// (OAuth2 and its REST API), with state, PKCE (S256) and, for OIDC, a nonce. Use it through the
// accounts package, which declares its routes (/auth/oauth/{provider}, its callback and the Internal
// /internal/oauth-login) and serves them with HandleStart, HandleCallback and HandleInternalLogin.
//
// The flow keeps no server-side state: the start seals what the callback needs (state, PKCE
// verifier, nonce, role) in a short-lived HttpOnly cookie signed with Config.StateKey, so any node of
// any region can finish a sign-in another began. The callback exchanges the code and takes the
// provider's identity (provider, subject) and verified email. The identity decides who signs in: the
// user it is linked to (found through the accounts core's directory, signed in by their home region,
// here or through /internal/oauth-login). An unlinked identity whose email an account holds links
// nothing and signs nobody in: 409 account_exists with a link token (link.go), which the account's
// verified owner spends with their password at /auth/oauth/{provider}/link (HandleLink). Otherwise a
// user is created in this region. Passwords, users and sessions stay the accounts core's business;
// this package never reads a table.
package oauth
