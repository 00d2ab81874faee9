package shardkey

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every error from a parser, decoder or constructor in this
// package wraps exactly one of them with detail about the input, so callers
// map them to a 400 with errors.Is instead of parsing messages. (The one
// other error is a failing entropy source in Generator.New, wrapped as is.)
var (
	ErrInvalidKeyspaceID = errors.New("shardkey: invalid keyspace id")
	ErrInvalidKeyRange   = errors.New("shardkey: invalid keyrange")
	ErrInvalidRegion     = errors.New("shardkey: invalid region")
	ErrInvalidID         = errors.New("shardkey: invalid id")
	ErrWrongKind         = errors.New("shardkey: wrong id kind")
)

// maxDetail bounds how much of a rejected input is echoed into an error
// message: inputs come from clients and can be arbitrarily large.
const maxDetail = 64

// detail quotes s for an error message, truncated to maxDetail bytes.
func detail(s string) string {
	if len(s) > maxDetail {
		s = s[:maxDetail] + "..."
	}
	return strconv.Quote(s)
}
