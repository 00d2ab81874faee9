// Package wire names the HTTP headers that the edge router and the API nodes exchange, in Go's
// canonical form, so either side can use them as header-map keys without canonicalising again.
// The X-Meridian-* headers are internal: the router strips every one of them from clients.
package wire

const (
	// RequestID is the request's ID (the contract spells it X-Request-ID): see internal/requestid.
	RequestID = "X-Request-Id"
	// Region is the region that served a response.
	Region = "X-Meridian-Region"
	// ReplayRegion is a node's hint, on a 421, naming the region that holds the data; the router
	// replays the request there once.
	ReplayRegion = "X-Meridian-Replay-Region"
	// Replayed marks a request the router replays in the region a node named: the loop guard. Its
	// value is the region that sent the hint.
	Replayed = "X-Meridian-Replayed-From"
	// TokenRevoked marks a node's 401 for an access token whose session has ended: the router then
	// refuses that token itself until it expires, and strips the header from the response.
	TokenRevoked = "X-Meridian-Token-Revoked"
	// KeyVerified is set by a node on its answer to a request whose API key it verified (the secret
	// matched, the key is live); its value is the key's ID. The router charges the key's rate-limit
	// budget only then, and drops the header.
	KeyVerified = "X-Meridian-Key-Verified"
	// InternalPrefix starts every internal header; none may come from a client.
	InternalPrefix = "X-Meridian-"

	ForwardedFor   = "X-Forwarded-For"
	ForwardedProto = "X-Forwarded-Proto"
	ForwardedHost  = "X-Forwarded-Host"
)
