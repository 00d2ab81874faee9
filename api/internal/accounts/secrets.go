package accounts

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Opaque credentials. Both carry the ID of their row, and so its owner's ksid: any node or router
// finds the shard without a lookup, and the secret part is only ever compared as a SHA-256.
//
//	refresh token: mrt_<token family ID>.<32 random bytes, base64url>
//	API key:       mk_<API key ID>_<32 random bytes, base64url>
const (
	refreshPrefix = "mrt_"
	apiKeyPrefix  = "mk_"
	secretBytes   = 32
)

var (
	secretTextLen = base64.RawURLEncoding.EncodedLen(secretBytes)
	// idTextLen is the length of an ID's text form: "tfm_" + 32 base32 characters.
	idTextLen = len(shardkey.KindUser.Prefix()) + 1 + 32

	errMalformed = errors.New("malformed credential")
)

func newSecret() (string, error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// secretHash is what the database stores of a credential: SHA-256 of its whole text. The secrets are
// 256-bit random values, so a fast hash is enough (no dictionary to defend against).
func secretHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func newRefreshToken(family shardkey.ID) (string, error) {
	sec, err := newSecret()
	if err != nil {
		return "", err
	}
	return refreshPrefix + family.String() + "." + sec, nil
}

// parseRefreshToken returns the family a refresh token claims to belong to; only the stored hash
// says whether it is real.
func parseRefreshToken(tok string) (shardkey.ID, error) {
	if len(tok) != len(refreshPrefix)+idTextLen+1+secretTextLen || !strings.HasPrefix(tok, refreshPrefix) {
		return shardkey.ID{}, errMalformed
	}
	rest := tok[len(refreshPrefix):]
	if rest[idTextLen] != '.' || !base64URL(rest[idTextLen+1:]) {
		return shardkey.ID{}, errMalformed
	}
	id, err := shardkey.ParseIDOfKind(rest[:idTextLen], shardkey.KindTokenFamily)
	if err != nil {
		return shardkey.ID{}, errMalformed
	}
	return id, nil
}

func newAPIKey(id shardkey.ID) (key, secret string, err error) {
	sec, err := newSecret()
	if err != nil {
		return "", "", err
	}
	return apiKeyPrefix + id.String() + "_" + sec, sec, nil
}

// parseAPIKey returns the key ID an API key names.
func parseAPIKey(key string) (shardkey.ID, error) {
	if len(key) != len(apiKeyPrefix)+idTextLen+1+secretTextLen || !strings.HasPrefix(key, apiKeyPrefix) {
		return shardkey.ID{}, errMalformed
	}
	rest := key[len(apiKeyPrefix):]
	if rest[idTextLen] != '_' || !base64URL(rest[idTextLen+1:]) {
		return shardkey.ID{}, errMalformed
	}
	id, err := shardkey.ParseIDOfKind(rest[:idTextLen], shardkey.KindAPIKey)
	if err != nil {
		return shardkey.ID{}, errMalformed
	}
	return id, nil
}

// base64URL reports whether s is canonical unpadded base64url of secretBytes bytes.
func base64URL(s string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == secretBytes
}
