// Package accounts is everything under /api/v1/auth and GET /api/v1/users/me: registration with
// argon2id password hashes and email verification links (verify.go, mailed through a mailer.Mailer),
// login from any region, rotating refresh tokens with reuse detection,
// API keys, OAuth2 login (Google OIDC, GitHub), the JWKS of the access-token keys, and the
// cross-region email directory that keeps email unique across all regions while the email itself
// stays in the user's home region.
//
// The email directory lives in the subpackage directory, which this package drives through
// directory.Directory and answers through directory.Users. It is a set of claims, auth.email_claims, each keyed by a keyed hash of the
// normalised email (HMAC-SHA256 with a pepper every node shares) and stored in one "directory
// region" chosen by that hash. Registration claims the hash there before it creates the user in the
// home shard, and releases the claim if the creation fails; login asks the directory where the
// user lives and verifies the password there. Only the keyed hash, the user ID and the home region
// ever leave the home region. docs/auth.md tells the whole story, failure cases included.
//
// OAuth2 sign-in (state cookie, PKCE, providers, the callback flow) lives in the subpackage oauth,
// which drives this package through oauth.Accounts (find the user of an identity or the holder of an
// email, sign a linked identity in, create a user for it, link an identity for the account's proven
// owner); this package declares its routes and serves them with oauth.Service's handlers, as it does
// for the directory. docs/security.md says what each proof opens.
//
// Node-to-node calls (claims, lookups, forwarded logins) go to Internal routes under /internal/...
// through app.Peers; the edge router strips the internal secret from client requests.
package accounts
