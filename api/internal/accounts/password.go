package accounts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/alexedwards/argon2id"
)

// Password length limits, in characters. The upper one keeps a hash from being a denial of service
// (argon2 reads the whole password once per pass).
const (
	minPassword = 10
	maxPassword = 1024
)

// hasher hashes and checks passwords with argon2id. Each hash takes Memory KiB for its duration, so
// at most a fixed number run at once: a burst of logins waits instead of exhausting the node's memory.
type hasher struct {
	params argon2id.Params
	slots  chan struct{}
	// dummy is a hash of a random password with the current parameters, checked when a login names no
	// user so that unknown emails take as long as wrong passwords.
	dummy string
}

func newHasher(p argon2id.Params, concurrency int) (*hasher, error) {
	h := &hasher{params: p, slots: make(chan struct{}, max(concurrency, 1))}
	var pw [24]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	dummy, err := argon2id.CreateHash(base64.RawURLEncoding.EncodeToString(pw[:]), &h.params)
	if err != nil {
		return nil, fmt.Errorf("accounts: argon2id: %w", err)
	}
	h.dummy = dummy
	return h, nil
}

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hasher) release() { <-h.slots }

// hash returns the PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$key) of password.
func (h *hasher) hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	s, err := argon2id.CreateHash(password, &h.params)
	if err != nil {
		return "", fmt.Errorf("accounts: argon2id: %w", err)
	}
	return s, nil
}

// check compares password with a stored PHC string in constant time. An empty phc (no password, an
// unknown user) is checked against the dummy hash and never matches. stale reports that the hash was
// made with other parameters than the current ones, so the caller can rehash it.
func (h *hasher) check(ctx context.Context, password, phc string) (ok, stale bool, err error) {
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	defer h.release()
	if phc == "" {
		_, _, _ = argon2id.CheckHash(password, h.dummy)
		return false, false, nil
	}
	ok, p, err := argon2id.CheckHash(password, phc)
	if err != nil {
		return false, false, fmt.Errorf("accounts: stored password hash: %w", err)
	}
	stale = p.Memory != h.params.Memory || p.Iterations != h.params.Iterations ||
		p.Parallelism != h.params.Parallelism || p.KeyLength != h.params.KeyLength
	return ok, stale, nil
}
