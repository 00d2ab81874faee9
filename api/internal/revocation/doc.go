// Package revocation ends access tokens before they expire. An access token names its session (the
// refresh-token family, claim sid); when a session ends (logout, log out everywhere, refresh-token
// reuse) the family is revoked in the database, and every API node of every region refuses the
// family's tokens within about a second.
//
// The database row (auth.refresh_token_families.revoked_at) is the record. Three paths spread it:
//   - the node that revoked adds it to its own Set at once and appends it to the region's Redis
//     (a sorted set scored by time), which the region's nodes read every PollInterval;
//   - every node also reads the revoked families of its region's shards every ReconcileInterval, so a
//     revocation made while Redis was down, or lost with Redis's data, arrives all the same;
//   - every node asks one node of each other region for that region's revocations every
//     PeerInterval (GET /internal/revocations), because a token is also presented to other regions'
//     nodes (a request routed by the ID in its path).
//
// A Set keeps a family only as long as one of its tokens can still be valid: the access-token
// lifetime (at most an hour) after the revocation. The edge router learns from the nodes: a node that
// refuses a revoked token says so in a response header, and the router then refuses that token itself
// until it expires (accesstoken.Verifier.Revoke).
package revocation
