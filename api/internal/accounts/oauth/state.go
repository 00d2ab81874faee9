package oauth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/8thdegree/meridian/api/internal/authn"
)

// The OAuth state travels in a cookie the node signs, so any node of any region can finish a sign-in
// another started, with no server-side state: payload (base64url JSON) "." HMAC-SHA256 (base64url).
const (
	// StateCookie is the cookie's name, and StateTTL how long a sign-in may take from start to
	// callback.
	StateCookie = "meridian_oauth"
	StateTTL    = 10 * time.Minute
	// stateDomain separates these MACs from any other use of the key.
	stateDomain = "meridian/oauth-state/v1\x00"
	// maxStateCookie bounds what openState will look at.
	maxStateCookie = 1024
)

// oauthState is what the callback needs from the start of the flow.
type oauthState struct {
	Provider string     `json:"p"`
	State    string     `json:"s"`
	Verifier string     `json:"v"`
	Nonce    string     `json:"n,omitempty"`
	Role     authn.Role `json:"r"`
	Expires  int64      `json:"e"`
}

var errBadState = errors.New("bad OAuth state cookie")

func stateMAC(key []byte, domain, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// seal signs v (JSON) for domain: base64url payload "." base64url HMAC.
func seal(key []byte, domain string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(stateMAC(key, domain, payload)), nil
}

// unseal checks the MAC of a sealed value of domain and decodes it strictly into v.
func unseal(key []byte, domain, s string, max int, v any) error {
	if len(s) > max {
		return errBadState
	}
	payload, sig, ok := strings.Cut(s, ".")
	if !ok {
		return errBadState
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, stateMAC(key, domain, payload)) {
		return errBadState
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return errBadState
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errBadState
	}
	return nil
}

func sealState(key []byte, st oauthState) (string, error) { return seal(key, stateDomain, st) }

// openState checks the MAC and the expiry and returns the state.
func openState(key []byte, v string, now time.Time) (oauthState, error) {
	var st oauthState
	if err := unseal(key, stateDomain, v, maxStateCookie, &st); err != nil || st.State == "" || st.Verifier == "" {
		return oauthState{}, errBadState
	}
	if now.Unix() >= st.Expires {
		return oauthState{}, errBadState
	}
	return st, nil
}
