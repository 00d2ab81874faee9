package shardkey

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Kind says what an ID names. It is stored in the ID (byte 14) and spelled as
// the text prefix, and the two must agree.
type Kind uint8

// The kinds of entity IDs. Values are stored in IDs: never renumber or reuse.
const (
	KindUser        Kind = 1
	KindJob         Kind = 2
	KindReview      Kind = 3
	KindAPIKey      Kind = 4
	KindTokenFamily Kind = 5
	KindAudit       Kind = 6
	KindProposal    Kind = 7
	KindContract    Kind = 8

	maxKind = KindContract
)

// kindPrefixes holds the 3-letter prefixes indexed by Kind (slot 0 is unused);
// a constant, so no package-level mutable state is involved.
const (
	kindPrefixes = "???usrjobrevkeytfmaudprpctr"
	prefixLen    = 3
)

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool { return k >= KindUser && k <= maxKind }

// Prefix returns the three-letter text prefix ("usr", "job", "rev", "key",
// "tfm", "aud", "prp", "ctr"), or "" for an unknown kind.
func (k Kind) Prefix() string {
	if !k.Valid() {
		return ""
	}
	i := int(k) * prefixLen
	return kindPrefixes[i : i+prefixLen]
}

// String returns the kind's name ("user", "job", ...), or "Kind(N)".
func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindJob:
		return "job"
	case KindReview:
		return "review"
	case KindAPIKey:
		return "api_key"
	case KindTokenFamily:
		return "token_family"
	case KindAudit:
		return "audit"
	case KindProposal:
		return "proposal"
	case KindContract:
		return "contract"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// kindFromPrefix is the inverse of Prefix; ok is false for anything else.
func kindFromPrefix(p string) (Kind, bool) {
	switch p {
	case "usr":
		return KindUser, true
	case "job":
		return KindJob, true
	case "rev":
		return KindReview, true
	case "key":
		return KindAPIKey, true
	case "tfm":
		return KindTokenFamily, true
	case "aud":
		return KindAudit, true
	case "prp":
		return KindProposal, true
	case "ctr":
		return KindContract, true
	}
	return 0, false
}

// ID is an entity ID (user, job, review, ...). It carries its owner's ksid, so
// the shard holding the entity is known from the ID alone; it sorts by
// creation time (to the millisecond, then by owner) as bytes and as text; and
// it is unique without coordination between the nodes that make IDs.
//
// Layout (big-endian):
//
//	[0:6]   creation time, unix milliseconds (48 bits, good until year 10889)
//	[6:14]  owner ksid
//	[14]    kind
//	[15:20] 40 bits of entropy, random and monotonic within a millisecond
//	        per Generator (like ULID)
//
// Text form: Prefix() + "_" + the 20 bytes in 32 characters of lowercase
// Crockford base32, e.g. "usr_065wzsb800g370x3nmh42kr104106105". The
// alphabet is in ASCII order and 160 bits are exactly 32 characters, so text
// order equals byte order.
type ID [idLen]byte

const (
	idLen       = 20
	idTextLen   = prefixLen + 1 + idB32Len
	idB32Len    = idLen * 8 / 5
	maxIDMillis = 1<<48 - 1
	entropyBits = 40
	entropyMax  = 1<<entropyBits - 1

	// crockford is Crockford's base32 alphabet in lowercase: digits and
	// letters without i, l, o, u, in ASCII order so that text order is byte
	// order.
	crockford = "0123456789abcdefghjkmnpqrstvwxyz"
)

// invalidIDPrefix is what String writes for an ID whose kind byte is not a
// known kind (the zero ID among them). ParseID never accepts it.
const invalidIDPrefix = "invalid"

// makeID lays out an ID; the caller guarantees ms < 2^48, entropy < 2^40 and a
// valid kind.
func makeID(ms uint64, owner KeyspaceID, kind Kind, entropy uint64) ID {
	var id ID
	binary.BigEndian.PutUint16(id[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(id[2:6], uint32(ms))
	binary.BigEndian.PutUint64(id[6:14], uint64(owner))
	id[14] = byte(kind)
	id[15] = byte(entropy >> 32)
	binary.BigEndian.PutUint32(id[16:20], uint32(entropy))
	return id
}

// Kind returns the kind byte.
func (id ID) Kind() Kind { return Kind(id[14]) }

// KeyspaceID returns the owner's ksid: the shard key of the entity.
func (id ID) KeyspaceID() KeyspaceID { return KeyspaceID(binary.BigEndian.Uint64(id[6:14])) }

// Time returns the creation time, to the millisecond, in UTC.
func (id ID) Time() time.Time { return time.UnixMilli(int64(id.millis())).UTC() }

func (id ID) millis() uint64 { return binary.BigEndian.Uint64(id[0:8]) >> 16 }

// Bytes returns a copy of the 20 bytes (the form stored in PostgreSQL).
func (id ID) Bytes() []byte { return append([]byte(nil), id[:]...) }

// IsZero reports whether id is the zero ID (so `json:",omitzero"` works).
func (id ID) IsZero() bool { return id == ID{} }

// String returns the text form. An ID with an unknown kind byte (the zero ID,
// or bytes that never came from IDFromBytes or a Generator) is written as
// "invalid_" followed by its base32, which is readable in logs but never
// parses.
func (id ID) String() string {
	if !id.Kind().Valid() {
		var buf [len(invalidIDPrefix) + 1 + idB32Len]byte
		copy(buf[:], invalidIDPrefix+"_")
		id.putBase32((*[idB32Len]byte)(buf[len(invalidIDPrefix)+1:]))
		return string(buf[:])
	}
	var buf [idTextLen]byte
	id.putText(&buf)
	return string(buf[:]) // the one allocation
}

func (id *ID) putText(buf *[idTextLen]byte) {
	copy(buf[:prefixLen], id.Kind().Prefix())
	buf[prefixLen] = '_'
	id.putBase32((*[idB32Len]byte)(buf[prefixLen+1:]))
}

// putBase32 encodes the 20 bytes as four 40-bit groups of 8 characters, most
// significant bits first (the bit order of RFC 4648 base32). Fixed-size
// arrays let the compiler drop every bounds check.
func (id *ID) putBase32(dst *[idB32Len]byte) {
	for g := 0; g < 4; g++ {
		s := id[g*5 : g*5+5 : g*5+5]
		v := uint64(s[0])<<32 | uint64(s[1])<<24 | uint64(s[2])<<16 | uint64(s[3])<<8 | uint64(s[4])
		d := dst[g*8 : g*8+8 : g*8+8]
		d[0], d[1], d[2], d[3] = crockford[v>>35&31], crockford[v>>30&31], crockford[v>>25&31], crockford[v>>20&31]
		d[4], d[5], d[6], d[7] = crockford[v>>15&31], crockford[v>>10&31], crockford[v>>5&31], crockford[v&31]
	}
}

// crockfordDecode maps a byte to its value in the lowercase alphabet, or to
// 0xff. Only the canonical lowercase alphabet decodes: uppercase and
// Crockford's decoding aliases (i, l for 1, o for 0) are rejected on purpose,
// so that one ID has exactly one spelling and IDs can be compared, cached and
// deduplicated as strings. A string constant rather than a var, so there is no
// package-level mutable state; TestCrockfordDecodeTable checks it.
const crockfordDecode = "" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\xff\x12\x13\xff\x14\x15\xff" +
	"\x16\x17\x18\x19\x1a\xff\x1b\x1c\x1d\x1e\x1f\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// ParseID parses the text form strictly: a known prefix, "_", exactly 32
// lowercase Crockford base32 characters, and a kind byte that matches the
// prefix. Anything else is an error wrapping ErrInvalidID.
func ParseID(s string) (ID, error) {
	if len(s) != idTextLen || s[prefixLen] != '_' {
		return ID{}, fmt.Errorf("%w: %s: want <prefix>_<32 base32 characters>", ErrInvalidID, detail(s))
	}
	kind, ok := kindFromPrefix(s[:prefixLen])
	if !ok {
		return ID{}, fmt.Errorf("%w: %s: unknown prefix", ErrInvalidID, detail(s))
	}
	var id ID
	enc := s[prefixLen+1:]
	for g := 0; g < 4; g++ {
		var v, bad uint64
		for _, c := range []byte(enc[g*8 : g*8+8]) {
			d := uint64(crockfordDecode[c])
			bad |= d // 0xff has bit 7 set; no valid digit does
			v = v<<5 | d&31
		}
		if bad&0x80 != 0 {
			return ID{}, fmt.Errorf("%w: %s: want 32 lowercase base32 characters (0-9, a-z without i, l, o, u)", ErrInvalidID, detail(s))
		}
		o := g * 5
		id[o], id[o+1], id[o+2], id[o+3], id[o+4] = byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	if id.Kind() != kind {
		return ID{}, fmt.Errorf("%w: %s: prefix %q does not match kind byte %d", ErrInvalidID, detail(s), kind.Prefix(), uint8(id.Kind()))
	}
	return id, nil
}

// ParseIDOfKind is ParseID for handlers that expect one kind: an ID of another
// kind is an error wrapping ErrWrongKind.
func ParseIDOfKind(s string, want Kind) (ID, error) {
	id, err := ParseID(s)
	if err != nil {
		return ID{}, err
	}
	if id.Kind() != want {
		return ID{}, fmt.Errorf("%w: %s is a %s id, want %s", ErrWrongKind, detail(s), id.Kind(), want)
	}
	return id, nil
}

// IDFromBytes decodes the 20-byte form; the kind byte must be a known kind.
func IDFromBytes(b []byte) (ID, error) {
	if len(b) == idLen && Kind(b[14]).Valid() {
		return ID(b), nil
	}
	return ID{}, idBytesError(b)
}

func idBytesError(b []byte) error {
	if len(b) != idLen {
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidID, len(b), idLen)
	}
	return fmt.Errorf("%w: unknown kind byte %d", ErrInvalidID, b[14])
}

// MarshalText implements encoding.TextMarshaler. It refuses an ID with an
// unknown kind (including the zero ID): such text would not parse back, and
// emitting it is always a bug. Use `json:",omitzero"` for optional IDs.
func (id ID) MarshalText() ([]byte, error) {
	if !id.Kind().Valid() {
		return nil, fmt.Errorf("%w: unknown kind byte %d", ErrInvalidID, uint8(id.Kind()))
	}
	buf := new([idTextLen]byte)
	id.putText(buf)
	return buf[:], nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseID's rules.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
