package shardkey

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// KeyspaceID (ksid) is the shard key of every row: the top byte is the owner's
// home-region code, the low 56 bits a stable hash of the owner's identity.
// Ordering ksids as unsigned integers is the same as ordering their 8-byte
// big-endian forms, which is the order keyranges are defined in.
type KeyspaceID uint64

const (
	hashBits = 56
	hashMask = 1<<hashBits - 1

	// ksidDomain separates ksid hashes from any other SHA-256 use of the same
	// identity bytes and versions the derivation: a new scheme gets a new tag.
	ksidDomain = "meridian/ksid/v1\x00"
)

// NewKeyspaceID derives the ksid of a new user homed in region r. The low 56
// bits are the first 7 bytes of SHA-256(ksidDomain || identity).
//
// The ksid is derived once, at signup, and then stored: it must never be
// recomputed from data that can change (an email address, say). A relocated
// user keeps the hash and changes region with WithRegion.
func NewKeyspaceID(r Region, identity []byte) KeyspaceID {
	// A stack buffer covers typical identities (UUIDs, emails) without an
	// allocation; longer ones spill to the heap in append.
	var buf [128]byte
	msg := append(append(buf[:0], ksidDomain...), identity...)
	sum := sha256.Sum256(msg)
	h := binary.BigEndian.Uint64(sum[:8]) >> 8
	return KeyspaceID(uint64(r)<<hashBits | h)
}

// MakeKeyspaceID assembles a ksid from a region and a 56-bit hash.
func MakeKeyspaceID(r Region, hash56 uint64) (KeyspaceID, error) {
	if hash56 > hashMask {
		return 0, fmt.Errorf("%w: hash %#x does not fit in 56 bits", ErrInvalidKeyspaceID, hash56)
	}
	return KeyspaceID(uint64(r)<<hashBits | hash56), nil
}

// Region returns the home-region code (the top byte).
func (k KeyspaceID) Region() Region { return Region(k >> hashBits) }

// Hash returns the low 56 bits.
func (k KeyspaceID) Hash() uint64 { return uint64(k) & hashMask }

// WithRegion returns the ksid with the same hash in region r: the new ksid of a
// user relocated to r.
func (k KeyspaceID) WithRegion(r Region) KeyspaceID {
	return KeyspaceID(uint64(r)<<hashBits | uint64(k)&hashMask)
}

// Bytes returns the 8-byte big-endian form: the Vitess keyspace id, and the
// form stored in PostgreSQL as bytea (whose byte order is the keyrange order,
// unlike a signed bigint).
func (k KeyspaceID) Bytes() []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(k))
}

// AppendBytes appends the 8-byte big-endian form to b.
func (k KeyspaceID) AppendBytes(b []byte) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(k))
}

// KeyspaceIDFromBytes decodes exactly 8 big-endian bytes.
func KeyspaceIDFromBytes(b []byte) (KeyspaceID, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d bytes, want 8", ErrInvalidKeyspaceID, len(b))
	}
	return KeyspaceID(binary.BigEndian.Uint64(b)), nil
}

// String returns 16 lowercase hex digits.
func (k KeyspaceID) String() string {
	var buf [16]byte
	return string(k.appendText(buf[:0]))
}

func (k KeyspaceID) appendText(b []byte) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(k>>uint(shift))&0xf])
	}
	return b
}

// ParseKeyspaceID parses exactly 16 hex digits, in either case, with no prefix.
func ParseKeyspaceID(s string) (KeyspaceID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%w: %s: want 16 hex digits", ErrInvalidKeyspaceID, detail(s))
	}
	v, ok := parseHexUint64(s)
	if !ok {
		return 0, fmt.Errorf("%w: %s: want 16 hex digits", ErrInvalidKeyspaceID, detail(s))
	}
	return KeyspaceID(v), nil
}

// MarshalText implements encoding.TextMarshaler (16 lowercase hex digits).
func (k KeyspaceID) MarshalText() ([]byte, error) {
	return k.appendText(make([]byte, 0, 16)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseKeyspaceID's rules.
func (k *KeyspaceID) UnmarshalText(b []byte) error {
	v, err := ParseKeyspaceID(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}
