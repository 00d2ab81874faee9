// Package credential reads what a request carries that names its caller or its data, without
// checking any secret: the Authorization header's scheme, an API key's key ID, a refresh token's family
// ID. Every one of these IDs carries its owner's keyspace ID, which is all the edge needs to route; the
// API node checks the secret.
//
// The formats are the API node's (api/internal/accounts):
//
//	API key:       mk_<key ID>_<43 characters of base64url>
//	refresh token: mrt_<token family ID>.<43 characters of base64url>
package credential

import (
	"errors"
	"strings"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// ErrMalformed is returned for a credential that cannot be one the API issued.
var ErrMalformed = errors.New("malformed credential")

// Scheme is the Authorization scheme of a request.
type Scheme uint8

const (
	// None: no Authorization header.
	None Scheme = iota
	// Bearer: an access token (JWT).
	Bearer
	// APIKey: "ApiKey mk_…".
	APIKey
	// Unknown: a header with another or no scheme; the node decides what it means.
	Unknown
)

const (
	apiKeyPrefix  = "mk_"
	refreshPrefix = "mrt_"
	// idLen is the length of an ID's text form: a three-letter prefix, "_" and 32 base32 characters.
	idLen = 36
	// secretLen is 32 random bytes in unpadded base64url.
	secretLen = 43
)

// Authorization splits an Authorization header value into its scheme and credential. The scheme is
// case-insensitive (RFC 9110); the credential is trimmed.
func Authorization(h string) (Scheme, string) {
	if h == "" {
		return None, ""
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return Bearer, cred
	case strings.EqualFold(scheme, "ApiKey"):
		return APIKey, cred
	}
	return Unknown, cred
}

// APIKeyID returns the ID of the key an API key names.
func APIKeyID(key string) (shardkey.ID, error) {
	return idIn(key, apiKeyPrefix, '_', shardkey.KindAPIKey)
}

// RefreshFamily returns the ID of the token family a refresh token names.
func RefreshFamily(tok string) (shardkey.ID, error) {
	return idIn(tok, refreshPrefix, '.', shardkey.KindTokenFamily)
}

func idIn(s, prefix string, sep byte, kind shardkey.Kind) (shardkey.ID, error) {
	if len(s) != len(prefix)+idLen+1+secretLen || !strings.HasPrefix(s, prefix) {
		return shardkey.ID{}, ErrMalformed
	}
	rest := s[len(prefix):]
	if rest[idLen] != sep || !base64URL(rest[idLen+1:]) {
		return shardkey.ID{}, ErrMalformed
	}
	id, err := shardkey.ParseIDOfKind(rest[:idLen], kind)
	if err != nil {
		return shardkey.ID{}, ErrMalformed
	}
	return id, nil
}

// base64URL reports whether s uses only the unpadded base64url alphabet. The node decodes strictly;
// the edge only needs to refuse what can never be a key.
func base64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
