package shardkey

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"strings"

	"vitess.io/vitess/go/vt/key"
	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
)

// KeyRange is the half-open range [Start, End) of keyspace IDs, written in
// Vitess notation: "-" (everything), "40-" (from 40.. to the end), "-80",
// "40-48", "4080-41". Each bound in text is a big-endian prefix of up to 8
// bytes, padded with zero bytes, so "40-48" is
// [0x4000000000000000, 0x4800000000000000).
//
// End == 0 means unbounded (to the end of the keyspace); Start == 0 is the
// start of the keyspace. The zero KeyRange is therefore the full range "-".
// A KeyRange built by this package's functions always has Start < End or
// End == 0; methods assume that, and MarshalText refuses anything else.
type KeyRange struct {
	Start, End uint64
}

// maxKeyRangeText is the longest text ParseKeyRange can accept: two 8-byte
// bounds and the dash. Checked first so the regular expression in
// key.IsValidKeyRange never runs over an attacker-sized string.
const maxKeyRangeText = 2*16 + 1

// ParseKeyRange parses Vitess keyrange notation.
//
// It accepts what vitess key.IsValidKeyRange accepts (hex digits in either
// case, in whole bytes), with these exceptions, all errors:
//   - a bound longer than 8 bytes: a ksid has 8 bytes, so a longer bound
//     names no ksid boundary that an 8-byte bound could not;
//   - an empty range (start >= end, e.g. "40-40", "48-40", "4000-40");
//   - a written end bound that is all zero bytes ("40-00", "-00"): Vitess
//     reads it as "unbounded", which is the opposite of what it looks like;
//   - "0": Vitess's name for the single shard of an unsharded keyspace, a
//     shard name rather than a keyrange; write "-".
//
// Non-canonical spellings of a valid range ("4000-4800", "00-40", "4A-4B")
// are accepted and String returns the canonical form ("40-48", "-40", "4a-4b").
func ParseKeyRange(s string) (KeyRange, error) {
	if s == "0" {
		return KeyRange{}, fmt.Errorf(`%w: "0" is a shard name, not a keyrange; the full range is "-"`, ErrInvalidKeyRange)
	}
	if len(s) > maxKeyRangeText || !key.IsValidKeyRange(s) {
		return KeyRange{}, fmt.Errorf("%w: %s: want hex bounds of at most 8 whole bytes around a dash, e.g. \"40-48\"", ErrInvalidKeyRange, detail(s))
	}
	startHex, endHex, _ := strings.Cut(s, "-")
	p, err := key.ParseKeyRangeParts(startHex, endHex)
	if err != nil {
		return KeyRange{}, fmt.Errorf("%w: %s: %w", ErrInvalidKeyRange, detail(s), err)
	}
	if endHex != "" && allZero(p.End) {
		return KeyRange{}, fmt.Errorf("%w: %s: an end bound of zero bytes is ambiguous; write an unbounded end as %q", ErrInvalidKeyRange, detail(s), startHex+"-")
	}
	r, err := keyRangeFromBounds(p.Start, p.End)
	if err != nil {
		return KeyRange{}, fmt.Errorf("%w: %s: %w", ErrInvalidKeyRange, detail(s), err)
	}
	return r, nil
}

// MustParseKeyRange is ParseKeyRange for constants and tests; it panics on
// invalid input.
func MustParseKeyRange(s string) KeyRange {
	r, err := ParseKeyRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

// KeyRangeFromProto converts a Vitess keyrange. It follows Vitess semantics:
// a nil range is the full range and a bound of zero bytes is unbounded. Bounds
// longer than 8 bytes and empty ranges are errors.
func KeyRangeFromProto(p *topodatapb.KeyRange) (KeyRange, error) {
	if p == nil {
		return KeyRange{}, nil
	}
	r, err := keyRangeFromBounds(p.Start, p.End)
	if err != nil {
		return KeyRange{}, fmt.Errorf("%w: %s: %w", ErrInvalidKeyRange, detail(key.KeyRangeString(p)), err)
	}
	return r, nil
}

func keyRangeFromBounds(start, end []byte) (KeyRange, error) {
	if len(start) > 8 || len(end) > 8 {
		return KeyRange{}, fmt.Errorf("bound longer than 8 bytes")
	}
	r := KeyRange{Start: boundValue(start), End: boundValue(end)}
	if !r.valid() {
		return KeyRange{}, fmt.Errorf("empty range: start is not below end")
	}
	return r, nil
}

// boundValue reads a Vitess bound (a big-endian prefix of at most 8 bytes).
func boundValue(b []byte) uint64 {
	var buf [8]byte
	copy(buf[:], b)
	return binary.BigEndian.Uint64(buf[:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (r KeyRange) valid() bool { return r.End == 0 || r.Start < r.End }

// last returns the largest ksid in the range. For an unbounded end, End-1
// wraps to the largest ksid, which is what makes the comparisons below
// branch-free.
func (r KeyRange) last() uint64 { return r.End - 1 }

// String returns canonical Vitess notation: lowercase, trailing zero bytes of
// each bound trimmed, an unbounded side empty ("40-48", "-80", "ff-", "-").
func (r KeyRange) String() string {
	if r.IsFull() {
		return "-"
	}
	var buf [maxKeyRangeText]byte
	return string(r.appendText(buf[:0]))
}

func (r KeyRange) appendText(b []byte) []byte {
	b = appendBoundHex(b, r.Start)
	b = append(b, '-')
	return appendBoundHex(b, r.End)
}

// appendBoundHex writes v as hex with trailing zero bytes trimmed (nothing
// for 0).
func appendBoundHex(b []byte, v uint64) []byte {
	for v != 0 {
		c := byte(v >> 56)
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
		v <<= 8
	}
	return b
}

// trimmedBound returns v's big-endian bytes with trailing zero bytes trimmed,
// nil for 0: the same bytes key.ParseKeyRangeParts makes of String's output.
func trimmedBound(v uint64) []byte {
	if v == 0 {
		return nil
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
	for b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// Proto returns the Vitess form, for the key.* helpers and Vitess APIs.
func (r KeyRange) Proto() *topodatapb.KeyRange {
	return &topodatapb.KeyRange{Start: trimmedBound(r.Start), End: trimmedBound(r.End)}
}

// Contains reports whether k is in the range. It is on the routing hot path:
// one subtraction and one comparison, no branch on unbounded ends, no
// allocation.
func (r KeyRange) Contains(k KeyspaceID) bool {
	// k-Start wraps to a huge value when k < Start, so a single unsigned
	// comparison checks both bounds.
	return uint64(k)-r.Start <= r.last()-r.Start
}

// ContainsRange reports whether o lies entirely within r.
func (r KeyRange) ContainsRange(o KeyRange) bool {
	return r.Start <= o.Start && o.last() <= r.last()
}

// Overlaps reports whether r and o share at least one ksid.
func (r KeyRange) Overlaps(o KeyRange) bool {
	return r.Start <= o.last() && o.Start <= r.last()
}

// IsFull reports whether r is the whole keyspace ("-").
func (r KeyRange) IsFull() bool { return r.Start == 0 && r.End == 0 }

// Region returns the region whose keyspace contains all of r, if there is one.
// A keyrange may only be assigned to a shard of that region.
func (r KeyRange) Region() (Region, bool) {
	first, last := Region(r.Start>>hashBits), Region(r.last()>>hashBits)
	if first != last {
		return 0, false
	}
	return first, true
}

// SplitAt splits r into [Start, k) and [k, End). k must be strictly inside r:
// above Start and in the range, so that neither half is empty.
func (r KeyRange) SplitAt(k KeyspaceID) (KeyRange, KeyRange, error) {
	if !r.valid() {
		return KeyRange{}, KeyRange{}, fmt.Errorf("%w: %s: empty range", ErrInvalidKeyRange, r)
	}
	if uint64(k) <= r.Start || !r.Contains(k) {
		return KeyRange{}, KeyRange{}, fmt.Errorf("%w: split point %s is not strictly inside %s", ErrInvalidKeyRange, k, r)
	}
	return KeyRange{Start: r.Start, End: uint64(k)}, KeyRange{Start: uint64(k), End: r.End}, nil
}

// Halve splits r at its midpoint; the lower half is the larger by one ksid
// when the width is odd. Ranges on byte boundaries halve to ranges on the next
// bit: "-" → "-80", "80-"; "40-48" → "40-44", "44-48".
func (r KeyRange) Halve() (KeyRange, KeyRange, error) {
	if !r.valid() {
		return KeyRange{}, KeyRange{}, fmt.Errorf("%w: %s: empty range", ErrInvalidKeyRange, r)
	}
	// w1 is width-1, which unlike the width itself fits in 64 bits for "-".
	w1 := r.last() - r.Start
	if w1 == 0 {
		return KeyRange{}, KeyRange{}, fmt.Errorf("%w: %s holds a single ksid and cannot be halved", ErrInvalidKeyRange, r)
	}
	// The low half gets ceil(width/2) = floor(w1/2) + 1 ksids, a sum that
	// cannot overflow even for the full range.
	mid := r.Start + w1/2 + 1
	return r.SplitAt(KeyspaceID(mid))
}

// MarshalText implements encoding.TextMarshaler with String's canonical form.
// It refuses an empty range so that no text is emitted that ParseKeyRange
// would reject.
func (r KeyRange) MarshalText() ([]byte, error) {
	if !r.valid() {
		return nil, fmt.Errorf("%w: %s: empty range", ErrInvalidKeyRange, r)
	}
	if r.IsFull() {
		return []byte("-"), nil
	}
	return r.appendText(make([]byte, 0, maxKeyRangeText)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseKeyRange's rules.
func (r *KeyRange) UnmarshalText(b []byte) error {
	v, err := ParseKeyRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// CompareKeyRanges orders keyranges by start, then by end, an unbounded end
// being the largest. It returns -1, 0 or +1, for slices.SortFunc.
func CompareKeyRanges(a, b KeyRange) int {
	if c := cmp.Compare(a.Start, b.Start); c != 0 {
		return c
	}
	return cmp.Compare(a.last(), b.last())
}
