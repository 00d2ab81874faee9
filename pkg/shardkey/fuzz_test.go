package shardkey

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"vitess.io/vitess/go/vt/key"
	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
)

// Every decoder is fuzzed with the same contract: garbage gives an error that
// wraps the package's sentinel and never a panic; anything accepted
// round-trips through the canonical encoding.

func FuzzParseRegion(f *testing.F) {
	for _, s := range []string{"00", "20", "ff", "FF", "aB", "", "2", "200", "zz", "-1", "+2", "0x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRegion(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRegion) {
				t.Fatalf("ParseRegion(%q) err = %v, not ErrInvalidRegion", s, err)
			}
			return
		}
		if r.String() != strings.ToLower(s) {
			t.Fatalf("ParseRegion(%q).String() = %q", s, r.String())
		}
		if back, err := ParseRegion(r.String()); err != nil || back != r {
			t.Fatalf("%q: canonical form does not round-trip: %v, %v", s, back, err)
		}
	})
}

func FuzzParseKeyspaceID(f *testing.F) {
	for _, s := range []string{"0000000000000000", "203383a3ad22414f", "203383A3AD22414F", "ffffffffffffffff",
		"", "203383a3ad22414", "203383a3ad22414f0", "0x203383a3ad2241", "+203383a3ad22414", "2033_83a3ad22414"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyspaceID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyspaceID) {
				t.Fatalf("ParseKeyspaceID(%q) err = %v", s, err)
			}
			return
		}
		if k.String() != strings.ToLower(s) {
			t.Fatalf("ParseKeyspaceID(%q).String() = %q", s, k.String())
		}
		if back, err := ParseKeyspaceID(k.String()); err != nil || back != k {
			t.Fatalf("%q: canonical form does not round-trip: %v, %v", s, back, err)
		}
	})
}

func FuzzKeyspaceIDFromBytes(f *testing.F) {
	for _, b := range [][]byte{nil, {}, make([]byte, 8), bytes.Repeat([]byte{0xff}, 8), {0x20, 0x33, 0x83, 0xa3, 0xad, 0x22, 0x41, 0x4f}, make([]byte, 7), make([]byte, 9)} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := KeyspaceIDFromBytes(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyspaceID) || len(b) == 8 {
				t.Fatalf("KeyspaceIDFromBytes(%x) err = %v", b, err)
			}
			return
		}
		if !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("KeyspaceIDFromBytes(%x).Bytes() = %x", b, k.Bytes())
		}
	})
}

func FuzzParseKeyRange(f *testing.F) {
	for _, s := range []string{"-", "40-", "-80", "40-48", "4080-41", "4000-4800", "00-", "4A-4B", "ff-",
		"0102030405060708-0102030405060709", "", "0", "4-", "40-40", "48-40", "zz-", "40-00", "-00",
		"010203040506070809-", "-010203040506070809", "40-48-50", "--", "0x40-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseKeyRange(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyRange) {
				t.Fatalf("ParseKeyRange(%q) err = %v", s, err)
			}
			return
		}
		canon := r.String()
		back, err := ParseKeyRange(canon)
		if err != nil || back != r || back.String() != canon {
			t.Fatalf("%q: canonical %q does not round-trip: %+v, %v", s, canon, back, err)
		}
		// Anything accepted is a range Vitess accepts and agrees on.
		if !key.IsValidKeyRange(s) {
			t.Fatalf("accepted %q, which vitess rejects", s)
		}
		start, end, _ := strings.Cut(s, "-")
		vp, err := key.ParseKeyRangeParts(start, end)
		if err != nil || !key.KeyRangeEqual(vp, r.Proto()) {
			t.Fatalf("%q: vitess reads %v, we read %q", s, vp, canon)
		}
		if fp, err := KeyRangeFromProto(r.Proto()); err != nil || fp != r {
			t.Fatalf("%q: Proto does not round-trip: %+v, %v", s, fp, err)
		}
	})
}

func FuzzKeyRangeFromProto(f *testing.F) {
	f.Add([]byte{}, []byte{}, false)
	f.Add([]byte{0x40}, []byte{0x48}, false)
	f.Add([]byte{0x40}, []byte{0}, false)
	f.Add([]byte{0x48}, []byte{0x40}, false)
	f.Add(make([]byte, 9), []byte{}, false)
	f.Add([]byte{}, []byte{}, true)
	f.Fuzz(func(t *testing.T, start, end []byte, isNil bool) {
		p := &topodatapb.KeyRange{Start: start, End: end}
		if isNil {
			p = nil
		}
		r, err := KeyRangeFromProto(p)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyRange) {
				t.Fatalf("KeyRangeFromProto(%x, %x) err = %v", start, end, err)
			}
			return
		}
		if p != nil && !key.KeyRangeEqual(p, r.Proto()) {
			t.Fatalf("KeyRangeFromProto(%x-%x) = %q, which vitess does not consider equal", start, end, r)
		}
		if back, err := ParseKeyRange(r.String()); err != nil || back != r {
			t.Fatalf("%q does not round-trip: %+v, %v", r, back, err)
		}
	})
}

func FuzzParseID(f *testing.F) {
	valid := makeID(1700000000000, 0x203383a3ad22414f, KindUser, 0x0102030405).String()
	for _, s := range []string{valid, strings.ToUpper(valid), "job" + valid[3:], "", "usr_", valid[:35], valid + "0",
		valid[:10] + "i" + valid[11:], "invalid_" + strings.Repeat("0", 32),
		makeID(0, 0, KindAudit, 0).String(), makeID(maxIDMillis, ^KeyspaceID(0), KindTokenFamily, entropyMax).String()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("ParseID(%q) err = %v", s, err)
			}
			return
		}
		// Strict canonical form: the only accepted spelling is String's.
		if id.String() != s {
			t.Fatalf("ParseID(%q).String() = %q", s, id.String())
		}
		if b, err := IDFromBytes(id.Bytes()); err != nil || b != id {
			t.Fatalf("%q: bytes do not round-trip: %v", s, err)
		}
		if _, err := ParseIDOfKind(s, id.Kind()); err != nil {
			t.Fatalf("ParseIDOfKind(%q, own kind): %v", s, err)
		}
	})
}

func FuzzIDFromBytes(f *testing.F) {
	good := makeID(1700000000000, 0x203383a3ad22414f, KindJob, 77)
	f.Add(good[:])
	f.Add([]byte(nil))
	f.Add(make([]byte, 20))
	f.Add(good[:19])
	f.Add(append(good.Bytes(), 1))
	f.Add(bytes.Repeat([]byte{0xff}, 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := IDFromBytes(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("IDFromBytes(%x) err = %v", b, err)
			}
			return
		}
		if !bytes.Equal(id.Bytes(), b) {
			t.Fatalf("IDFromBytes(%x).Bytes() = %x", b, id.Bytes())
		}
		s := id.String()
		back, err := ParseID(s)
		if err != nil || back != id {
			t.Fatalf("%x: text %q does not round-trip: %v", b, s, err)
		}
		if want := id.Kind().Prefix() + "_" + crockfordEncoding.EncodeToString(b); s != want {
			t.Fatalf("String() = %q, base32 oracle says %q", s, want)
		}
	})
}

// FuzzUnmarshalText feeds the same text to every TextUnmarshaler: each either
// fails with its sentinel and leaves the value unchanged, or accepts exactly
// what its Parse function accepts and marshals back to the canonical form.
func FuzzUnmarshalText(f *testing.F) {
	for _, s := range []string{"20", "FF", "203383a3ad22414f", "40-48", "4000-4800", "-", "0",
		makeID(1700000000000, 0x203383a3ad22414f, KindUser, 1).String(), "", "zz", "usr_"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)

		region := Region(0x77)
		if err := region.UnmarshalText(b); err != nil {
			if !errors.Is(err, ErrInvalidRegion) || region != 0x77 {
				t.Fatalf("Region.UnmarshalText(%q) = %v, value %v", s, err, region)
			}
		} else if want, _ := ParseRegion(s); region != want {
			t.Fatalf("Region.UnmarshalText(%q) = %v, ParseRegion says %v", s, region, want)
		} else if text, err := region.MarshalText(); err != nil || string(text) != strings.ToLower(s) {
			t.Fatalf("Region %q marshals to %q, %v", s, text, err)
		}

		k := KeyspaceID(0x77)
		if err := k.UnmarshalText(b); err != nil {
			if !errors.Is(err, ErrInvalidKeyspaceID) || k != 0x77 {
				t.Fatalf("KeyspaceID.UnmarshalText(%q) = %v, value %v", s, err, k)
			}
		} else if want, _ := ParseKeyspaceID(s); k != want {
			t.Fatalf("KeyspaceID.UnmarshalText(%q) = %v, ParseKeyspaceID says %v", s, k, want)
		} else if text, err := k.MarshalText(); err != nil || string(text) != strings.ToLower(s) {
			t.Fatalf("KeyspaceID %q marshals to %q, %v", s, text, err)
		}

		kr := KeyRange{Start: 7, End: 9}
		if err := kr.UnmarshalText(b); err != nil {
			if !errors.Is(err, ErrInvalidKeyRange) || kr != (KeyRange{Start: 7, End: 9}) {
				t.Fatalf("KeyRange.UnmarshalText(%q) = %v, value %+v", s, err, kr)
			}
		} else if want, _ := ParseKeyRange(s); kr != want {
			t.Fatalf("KeyRange.UnmarshalText(%q) = %+v, ParseKeyRange says %+v", s, kr, want)
		} else if text, err := kr.MarshalText(); err != nil || string(text) != kr.String() {
			t.Fatalf("KeyRange %q marshals to %q, %v", s, text, err)
		}

		var id ID
		if err := id.UnmarshalText(b); err != nil {
			if !errors.Is(err, ErrInvalidID) || !id.IsZero() {
				t.Fatalf("ID.UnmarshalText(%q) = %v, value %v", s, err, id)
			}
		} else if text, err := id.MarshalText(); err != nil || string(text) != s {
			t.Fatalf("ID %q marshals to %q, %v", s, text, err)
		}
	})
}
