package rest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/8thdegree/meridian/internal/apierror"
)

// Limits of list endpoints.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Page is the shape of every list response.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Limit parses ?limit= (default 20, 1..100).
func Limit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, apierror.Invalid(map[string]string{"limit": "must be an integer from 1 to 100"})
	}
	return n, nil
}

// EncodeCursor makes an opaque cursor of v (base64url of its JSON).
func EncodeCursor(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor made by EncodeCursor into v; anything else is a 400.
func DecodeCursor(s string, v any) error {
	bad := apierror.Invalid(map[string]string{"cursor": "is not a cursor this endpoint returned"})
	if len(s) > 4096 {
		return bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bad
	}
	return nil
}
