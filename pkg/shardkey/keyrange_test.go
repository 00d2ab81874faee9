package shardkey

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"vitess.io/vitess/go/vt/key"
	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
)

func TestParseKeyRange(t *testing.T) {
	tests := []struct {
		in    string
		want  KeyRange
		canon string
	}{
		{"-", KeyRange{}, "-"},
		{"00-", KeyRange{}, "-"},
		{"40-", KeyRange{Start: 0x40 << 56}, "40-"},
		{"-80", KeyRange{End: 0x80 << 56}, "-80"},
		{"00-80", KeyRange{End: 0x80 << 56}, "-80"},
		{"40-48", KeyRange{Start: 0x40 << 56, End: 0x48 << 56}, "40-48"},
		{"4000-4800", KeyRange{Start: 0x40 << 56, End: 0x48 << 56}, "40-48"},
		{"4080-41", KeyRange{Start: 0x4080 << 48, End: 0x41 << 56}, "4080-41"},
		{"4A-4B", KeyRange{Start: 0x4a << 56, End: 0x4b << 56}, "4a-4b"},
		{"ff-", KeyRange{Start: 0xff << 56}, "ff-"},
		{"-01", KeyRange{End: 0x01 << 56}, "-01"},
		{"20-21", KeyRange{Start: 0x20 << 56, End: 0x21 << 56}, "20-21"},
		{"0102030405060708-0102030405060709", KeyRange{Start: 0x0102030405060708, End: 0x0102030405060709}, "0102030405060708-0102030405060709"},
		{"fffffffffffffffe-ffffffffffffffff", KeyRange{Start: math.MaxUint64 - 1, End: math.MaxUint64}, "fffffffffffffffe-ffffffffffffffff"},
		{"ffffffffffffffff-", KeyRange{Start: math.MaxUint64}, "ffffffffffffffff-"},
		{"4000000000000000-", KeyRange{Start: 0x40 << 56}, "40-"},
	}
	for _, tt := range tests {
		got, err := ParseKeyRange(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseKeyRange(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if got.String() != tt.canon {
			t.Errorf("ParseKeyRange(%q).String() = %q, want %q", tt.in, got.String(), tt.canon)
		}
		if MustParseKeyRange(tt.canon) != got {
			t.Errorf("canonical %q does not parse back to %+v", tt.canon, got)
		}
		var u KeyRange
		if err := u.UnmarshalText([]byte(tt.in)); err != nil || u != got {
			t.Errorf("UnmarshalText(%q) = %+v, %v", tt.in, u, err)
		}
		text, err := got.MarshalText()
		if err != nil || string(text) != tt.canon {
			t.Errorf("MarshalText(%q) = %q, %v; want %q", tt.in, text, err, tt.canon)
		}
	}
}

func TestParseKeyRangeInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		"0",  // Vitess's unsharded shard name, not a keyrange
		"4-", // odd hex digits
		"-4",
		"400-",
		"40-40", // empty
		"48-40", // reversed
		"4000-40",
		"40-4000",
		"40-00", // a zero end bound reads as unbounded in Vitess
		"-00",
		"00-00",
		"zz-",
		"-zz",
		"0x40-",
		"40",
		"40-48-50",
		"--",
		" 40-48",
		"40-48 ",
		"40 -48",
		"40_48",
		"40-48\n",
		"010203040506070809-",                   // 9-byte start
		"-010203040506070809",                   // 9-byte end
		"000000000000000000-",                   // 9 zero bytes
		"40-400000000000000000",                 // 9 bytes, equal value
		"0102030405060708090a-0102030405060708", // too long overall
		"\u0660\u0661-",                         // non-ASCII digits
	} {
		got, err := ParseKeyRange(in)
		if !errors.Is(err, ErrInvalidKeyRange) {
			t.Errorf("ParseKeyRange(%q) = %+v, %v; want ErrInvalidKeyRange", in, got, err)
		}
		r := KeyRange{Start: 1, End: 2}
		if err := r.UnmarshalText([]byte(in)); !errors.Is(err, ErrInvalidKeyRange) || r != (KeyRange{Start: 1, End: 2}) {
			t.Errorf("UnmarshalText(%q) = %v, and changed the value to %+v", in, err, r)
		}
	}
}

func TestMustParseKeyRangePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParseKeyRange(\"48-40\") did not panic")
		}
	}()
	MustParseKeyRange("48-40")
}

func TestKeyRangeMarshalTextInvalid(t *testing.T) {
	for _, r := range []KeyRange{{Start: 5, End: 5}, {Start: 0x48 << 56, End: 0x40 << 56}} {
		if _, err := r.MarshalText(); !errors.Is(err, ErrInvalidKeyRange) {
			t.Errorf("%+v.MarshalText() err = %v, want ErrInvalidKeyRange", r, err)
		}
	}
}

func TestKeyRangeProto(t *testing.T) {
	tests := []struct {
		in         string
		start, end []byte
	}{
		{"-", nil, nil},
		{"40-", []byte{0x40}, nil},
		{"-80", nil, []byte{0x80}},
		{"4080-41", []byte{0x40, 0x80}, []byte{0x41}},
		{"0102030405060708-0102030405060709", []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{1, 2, 3, 4, 5, 6, 7, 9}},
	}
	for _, tt := range tests {
		r := MustParseKeyRange(tt.in)
		p := r.Proto()
		if !bytes.Equal(p.Start, tt.start) || !bytes.Equal(p.End, tt.end) || (tt.start == nil) != (p.Start == nil) || (tt.end == nil) != (p.End == nil) {
			t.Errorf("%q.Proto() = %x-%x, want %x-%x", tt.in, p.Start, p.End, tt.start, tt.end)
		}
		if got := key.KeyRangeString(p); got != r.String() {
			t.Errorf("key.KeyRangeString(%q.Proto()) = %q", tt.in, got)
		}
		back, err := KeyRangeFromProto(p)
		if err != nil || back != r {
			t.Errorf("KeyRangeFromProto(%q.Proto()) = %+v, %v", tt.in, back, err)
		}
	}

	fromProto := []struct {
		name    string
		p       *topodatapb.KeyRange
		want    string
		wantErr bool
	}{
		{name: "nil is full", p: nil, want: "-"},
		{name: "empty is full", p: &topodatapb.KeyRange{}, want: "-"},
		{name: "zero end is unbounded, as in Vitess", p: &topodatapb.KeyRange{Start: []byte{0x40}, End: []byte{0}}, want: "40-"},
		{name: "untrimmed", p: &topodatapb.KeyRange{Start: []byte{0x40, 0}, End: []byte{0x48, 0, 0, 0, 0, 0, 0, 0}}, want: "40-48"},
		{name: "9-byte start", p: &topodatapb.KeyRange{Start: make([]byte, 9)}, wantErr: true},
		{name: "9-byte end", p: &topodatapb.KeyRange{End: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}}, wantErr: true},
		{name: "reversed", p: &topodatapb.KeyRange{Start: []byte{0x48}, End: []byte{0x40}}, wantErr: true},
		{name: "empty", p: &topodatapb.KeyRange{Start: []byte{0x48}, End: []byte{0x48, 0}}, wantErr: true},
	}
	for _, tt := range fromProto {
		got, err := KeyRangeFromProto(tt.p)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidKeyRange) {
				t.Errorf("%s: KeyRangeFromProto = %+v, %v; want ErrInvalidKeyRange", tt.name, got, err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("%s: KeyRangeFromProto = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func ksid(s string) KeyspaceID {
	k, err := ParseKeyspaceID(s)
	if err != nil {
		panic(err)
	}
	return k
}

func TestKeyRangeContains(t *testing.T) {
	tests := []struct {
		r    string
		k    string
		want bool
	}{
		{"-", "0000000000000000", true},
		{"-", "ffffffffffffffff", true},
		{"40-", "4000000000000000", true},
		{"40-", "ffffffffffffffff", true},
		{"40-", "3fffffffffffffff", false},
		{"40-", "0000000000000000", false},
		{"-80", "0000000000000000", true},
		{"-80", "7fffffffffffffff", true},
		{"-80", "8000000000000000", false},
		{"-80", "ffffffffffffffff", false},
		{"40-48", "3fffffffffffffff", false},
		{"40-48", "4000000000000000", true},
		{"40-48", "47ffffffffffffff", true},
		{"40-48", "4800000000000000", false},
		{"4080-41", "407fffffffffffff", false},
		{"4080-41", "4080000000000000", true},
		{"4080-41", "40ffffffffffffff", true},
		{"ff-", "ff00000000000000", true},
		{"ff-", "ffffffffffffffff", true},
		{"ff-", "feffffffffffffff", false},
		{"-01", "0000000000000000", true},
		{"-01", "00ffffffffffffff", true},
		{"-01", "0100000000000000", false},
		{"fffffffffffffffe-ffffffffffffffff", "fffffffffffffffe", true},
		{"fffffffffffffffe-ffffffffffffffff", "ffffffffffffffff", false},
		{"ffffffffffffffff-", "ffffffffffffffff", true},
		{"ffffffffffffffff-", "fffffffffffffffe", false},
	}
	for _, tt := range tests {
		r, k := MustParseKeyRange(tt.r), ksid(tt.k)
		if got := r.Contains(k); got != tt.want {
			t.Errorf("%q.Contains(%v) = %v, want %v", tt.r, k, got, tt.want)
		}
		if vt := key.KeyRangeContains(r.Proto(), k.Bytes()); vt != tt.want {
			t.Errorf("vitess disagrees on %q.Contains(%v): %v", tt.r, k, vt)
		}
	}
}

func TestKeyRangeRelations(t *testing.T) {
	tests := []struct {
		a, b        string
		aContainsB  bool
		overlapping bool
	}{
		{"-", "-", true, true},
		{"-", "40-48", true, true},
		{"40-48", "-", false, true},
		{"-", "ff-", true, true},
		{"40-", "ff-", true, true},
		{"40-", "-40", false, false},
		{"-40", "40-", false, false},
		{"-41", "40-", false, true},
		{"40-48", "40-48", true, true},
		{"40-48", "40-44", true, true},
		{"40-48", "44-48", true, true},
		{"40-48", "44-4c", false, true},
		{"40-48", "48-50", false, false},
		{"48-50", "40-48", false, false},
		{"40-48", "4780-4880", false, true},
		{"-80", "80-", false, false},
		{"-80", "7f-", false, true},
		{"ff-", "fe-", false, true},
		{"fe-", "ff-", true, true},
		{"-01", "00ff-01", true, true},
	}
	for _, tt := range tests {
		a, b := MustParseKeyRange(tt.a), MustParseKeyRange(tt.b)
		if got := a.ContainsRange(b); got != tt.aContainsB {
			t.Errorf("%q.ContainsRange(%q) = %v, want %v", tt.a, tt.b, got, tt.aContainsB)
		}
		if got := a.Overlaps(b); got != tt.overlapping {
			t.Errorf("%q.Overlaps(%q) = %v, want %v", tt.a, tt.b, got, tt.overlapping)
		}
		if got := b.Overlaps(a); got != tt.overlapping {
			t.Errorf("%q.Overlaps(%q) = %v, want %v (symmetry)", tt.b, tt.a, got, tt.overlapping)
		}
	}
}

func TestKeyRangeIsFull(t *testing.T) {
	for in, want := range map[string]bool{"-": true, "00-": true, "-80": false, "80-": false, "-ff": false, "-ffffffffffffffff": false, "01-": false} {
		if got := MustParseKeyRange(in).IsFull(); got != want {
			t.Errorf("%q.IsFull() = %v, want %v", in, got, want)
		}
	}
}

func TestKeyRangeRegion(t *testing.T) {
	tests := []struct {
		r    string
		want Region
		ok   bool
	}{
		{"-", 0, false},
		{"-01", 0x00, true},
		{"-02", 0, false},
		{"0080-01", 0x00, true},
		{"20-21", 0x20, true},
		{"20-2080", 0x20, true},
		{"2080-21", 0x20, true},
		{"20ff-2101", 0, false},
		{"20-22", 0, false},
		{"1f80-20", 0x1f, true},
		{"1fff-2001", 0, false},
		{"ff-", 0xff, true},
		{"ff80-", 0xff, true},
		{"fe-", 0, false},
		{"80-", 0, false},
		{"ffffffffffffffff-", 0xff, true},
	}
	for _, tt := range tests {
		got, ok := MustParseKeyRange(tt.r).Region()
		if got != tt.want || ok != tt.ok {
			t.Errorf("%q.Region() = %v, %v; want %v, %v", tt.r, got, ok, tt.want, tt.ok)
		}
	}
}

func TestKeyRangeSplitAt(t *testing.T) {
	tests := []struct {
		r, at      string
		lo, hi     string
		wantErrMsg bool
	}{
		{r: "40-48", at: "4400000000000000", lo: "40-44", hi: "44-48"},
		{r: "40-48", at: "4000000000000001", lo: "40-4000000000000001", hi: "4000000000000001-48"},
		{r: "40-48", at: "47ffffffffffffff", lo: "40-47ffffffffffffff", hi: "47ffffffffffffff-48"},
		{r: "-", at: "8000000000000000", lo: "-80", hi: "80-"},
		{r: "-", at: "0000000000000001", lo: "-0000000000000001", hi: "0000000000000001-"},
		{r: "ff-", at: "ffffffffffffffff", lo: "ff-ffffffffffffffff", hi: "ffffffffffffffff-"},
		{r: "40-48", at: "4000000000000000", wantErrMsg: true}, // at start: empty low half
		{r: "40-48", at: "4800000000000000", wantErrMsg: true}, // at end
		{r: "40-48", at: "5000000000000000", wantErrMsg: true}, // outside
		{r: "40-48", at: "3000000000000000", wantErrMsg: true},
		{r: "-", at: "0000000000000000", wantErrMsg: true},
		{r: "80-", at: "0000000000000000", wantErrMsg: true},
	}
	for _, tt := range tests {
		lo, hi, err := MustParseKeyRange(tt.r).SplitAt(ksid(tt.at))
		if tt.wantErrMsg {
			if !errors.Is(err, ErrInvalidKeyRange) {
				t.Errorf("%q.SplitAt(%s) = %v, %v, %v; want ErrInvalidKeyRange", tt.r, tt.at, lo, hi, err)
			}
			continue
		}
		if err != nil || lo.String() != tt.lo || hi.String() != tt.hi {
			t.Errorf("%q.SplitAt(%s) = %q, %q, %v; want %q, %q", tt.r, tt.at, lo, hi, err, tt.lo, tt.hi)
		}
	}
	if _, _, err := (KeyRange{Start: 9, End: 3}).SplitAt(5); !errors.Is(err, ErrInvalidKeyRange) {
		t.Errorf("SplitAt on a reversed range: err = %v", err)
	}
}

func TestKeyRangeHalve(t *testing.T) {
	tests := []struct {
		r       string
		lo, hi  string
		wantErr bool
	}{
		{r: "-", lo: "-80", hi: "80-"},
		{r: "-80", lo: "-40", hi: "40-80"},
		{r: "80-", lo: "80-c0", hi: "c0-"},
		{r: "40-48", lo: "40-44", hi: "44-48"},
		{r: "20-21", lo: "20-2080", hi: "2080-21"},
		{r: "ff-", lo: "ff-ff80", hi: "ff80-"},
		{r: "-01", lo: "-0080", hi: "0080-01"},
		// Odd width: the low half takes the extra ksid.
		{r: "0000000000000001-0000000000000004", lo: "0000000000000001-0000000000000003", hi: "0000000000000003-0000000000000004"},
		{r: "fffffffffffffffd-", lo: "fffffffffffffffd-ffffffffffffffff", hi: "ffffffffffffffff-"},
		{r: "fffffffffffffffe-", lo: "fffffffffffffffe-ffffffffffffffff", hi: "ffffffffffffffff-"},
		{r: "0000000000000001-0000000000000003", lo: "0000000000000001-0000000000000002", hi: "0000000000000002-0000000000000003"},
		{r: "0000000000000001-0000000000000002", wantErr: true},
		{r: "ffffffffffffffff-", wantErr: true},
	}
	for _, tt := range tests {
		r := MustParseKeyRange(tt.r)
		lo, hi, err := r.Halve()
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidKeyRange) {
				t.Errorf("%q.Halve() = %q, %q, %v; want ErrInvalidKeyRange", tt.r, lo, hi, err)
			}
			continue
		}
		if err != nil || lo.String() != tt.lo || hi.String() != tt.hi {
			t.Errorf("%q.Halve() = %q, %q, %v; want %q, %q", tt.r, lo, hi, err, tt.lo, tt.hi)
		}
		if !r.ContainsRange(lo) || !r.ContainsRange(hi) || lo.Overlaps(hi) || lo.End != hi.Start {
			t.Errorf("%q.Halve() halves %q, %q do not tile the range", tt.r, lo, hi)
		}
	}
}

func TestCompareKeyRanges(t *testing.T) {
	want := []string{"-40", "-80", "-", "40-48", "40-", "4080-41", "80-ff", "80-", "ff-"}
	got := slices.Clone(want)
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
	slices.SortFunc(got, func(a, b string) int { return CompareKeyRanges(MustParseKeyRange(a), MustParseKeyRange(b)) })
	if !slices.Equal(got, want) {
		t.Errorf("sorted = %q, want %q", got, want)
	}
	if c := CompareKeyRanges(MustParseKeyRange("40-48"), MustParseKeyRange("4000-4800")); c != 0 {
		t.Errorf("equal ranges compare as %d", c)
	}
}

// randomKeyRange returns a valid range whose bounds are biased towards the
// interesting values: 0, the top, region boundaries and neighbours.
func randomKeyRange(rng *rand.Rand) KeyRange {
	for {
		r := KeyRange{Start: randomBound(rng), End: randomBound(rng)}
		if r.valid() {
			return r
		}
	}
}

func randomBound(rng *rand.Rand) uint64 {
	switch rng.IntN(5) {
	case 0:
		return 0
	case 1:
		return uint64(rng.IntN(256)) << 56
	case 2:
		return uint64(rng.IntN(256))<<56 + uint64(rng.IntN(3)) - 1
	case 3:
		return math.MaxUint64 - uint64(rng.IntN(3))
	}
	return rng.Uint64()
}

// TestKeyRangeAgreesWithVitess checks the branch-free arithmetic against the
// byte-slice semantics of vitess's key package on many random ranges.
func TestKeyRangeAgreesWithVitess(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 20000; i++ {
		a, b := randomKeyRange(rng), randomKeyRange(rng)
		pa, pb := a.Proto(), b.Proto()
		k := KeyspaceID(randomBound(rng))
		if got, want := a.Contains(k), key.KeyRangeContains(pa, k.Bytes()); got != want {
			t.Fatalf("%q.Contains(%v) = %v, vitess says %v", a, k, got, want)
		}
		if got, want := a.ContainsRange(b), key.KeyRangeContainsKeyRange(pa, pb); got != want {
			t.Fatalf("%q.ContainsRange(%q) = %v, vitess says %v", a, b, got, want)
		}
		if got, want := a.Overlaps(b), key.KeyRangeIntersect(pa, pb); got != want {
			t.Fatalf("%q.Overlaps(%q) = %v, vitess says %v", a, b, got, want)
		}
		if got, want := CompareKeyRanges(a, b), key.KeyRangeCompare(pa, pb); got != want {
			t.Fatalf("CompareKeyRanges(%q, %q) = %d, vitess says %d", a, b, got, want)
		}
		if got, want := a.String(), key.KeyRangeString(pa); got != want {
			t.Fatalf("String() = %q, vitess says %q", got, want)
		}
		if got, err := ParseKeyRange(a.String()); err != nil || got != a {
			t.Fatalf("%q does not round-trip: %+v, %v", a, got, err)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	r := MustParseKeyRange("40-48")
	k := ksid("4400000000000000")
	b := k.Bytes()
	id := makeID(1700000000000, k, KindJob, 12345)
	s := id.String()
	var sink bool
	var rsink Region
	checks := []struct {
		name string
		max  float64
		fn   func()
	}{
		{"KeyRange.Contains", 0, func() { sink = r.Contains(k) }},
		{"KeyspaceID.Region", 0, func() { rsink = k.Region() }},
		{"KeyspaceIDFromBytes", 0, func() { k, _ = KeyspaceIDFromBytes(b) }},
		{"ParseKeyspaceID", 0, func() { k, _ = ParseKeyspaceID("4400000000000000") }},
		{"ParseID", 0, func() { id, _ = ParseID(s) }},
		{"IDFromBytes", 0, func() { id, _ = IDFromBytes(id[:]) }},
		{"ID.String", 1, func() { s = id.String() }},
		{"ID.KeyspaceID", 0, func() { k = id.KeyspaceID() }},
	}
	for _, c := range checks {
		if got := testing.AllocsPerRun(100, c.fn); got > c.max {
			t.Errorf("%s: %v allocs per run, want <= %v", c.name, got, c.max)
		}
	}
	_, _ = sink, rsink
}
