// Package directory is the cross-region email directory that keeps email unique across all regions
// while the email itself stays in the user's home region. Use it to claim an email before a user is
// created, to find the home region of an email at login, and to release a claim whose user was
// never created.
//
// The directory is a set of claims, auth.email_claims, each keyed by a keyed hash of the normalised
// email (HMAC-SHA256 with a pepper every node shares, see HashEmail) and stored in one "directory
// region" chosen by that hash (Locate). A claim older than OrphanAfter whose user does not exist in
// its home region (asked through Users, which the accounts core implements) may be taken over; a
// registration finishes within ClaimWindow of its claim, so a live one is never taken over. Only the
// keyed hash, the user ID and the home region ever leave the home region. docs/auth.md tells the
// whole story.
//
// The accounts package declares the node-to-node routes (/internal/email-claims...) and serves them
// with HandleClaim, HandleLookup and HandleRelease.
package directory
