package shardkey

import (
	"errors"
	"testing"
)

func TestParseRegion(t *testing.T) {
	tests := []struct {
		in      string
		want    Region
		wantErr bool
	}{
		{in: "00", want: 0x00},
		{in: "20", want: 0x20},
		{in: "40", want: 0x40},
		{in: "60", want: 0x60},
		{in: "ff", want: 0xff},
		{in: "FF", want: 0xff},
		{in: "aB", want: 0xab},
		{in: "", wantErr: true},
		{in: "2", wantErr: true},
		{in: "200", wantErr: true},
		{in: "zz", wantErr: true},
		{in: "g0", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+2", wantErr: true},
		{in: " 2", wantErr: true},
		{in: "0x", wantErr: true},
		{in: "2\x00", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRegion(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidRegion) {
				t.Errorf("ParseRegion(%q) = %v, %v; want ErrInvalidRegion", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRegion(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestRegionString(t *testing.T) {
	tests := []struct {
		r    Region
		want string
	}{
		{0x00, "00"}, {0x0a, "0a"}, {0x20, "20"}, {0xab, "ab"}, {0xff, "ff"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("Region(%#x).String() = %q, want %q", uint8(tt.r), got, tt.want)
		}
	}
}

func TestRegionTextRoundTrip(t *testing.T) {
	for i := 0; i < 256; i++ {
		r := Region(i)
		text, err := r.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if string(text) != r.String() {
			t.Fatalf("MarshalText = %q, String = %q", text, r.String())
		}
		var back Region
		if err := back.UnmarshalText(text); err != nil || back != r {
			t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", text, back, err, r)
		}
	}
	var r Region = 7
	if err := r.UnmarshalText([]byte("xyz")); !errors.Is(err, ErrInvalidRegion) || r != 7 {
		t.Errorf("UnmarshalText(bad) = %v and changed the value to %v", err, r)
	}
}

func TestRegionKeyRange(t *testing.T) {
	tests := []struct {
		r    Region
		want KeyRange
		text string
	}{
		{0x00, KeyRange{Start: 0, End: 0x01 << 56}, "-01"},
		{0x20, KeyRange{Start: 0x20 << 56, End: 0x21 << 56}, "20-21"},
		{0x40, KeyRange{Start: 0x40 << 56, End: 0x41 << 56}, "40-41"},
		{0xfe, KeyRange{Start: 0xfe << 56, End: 0xff << 56}, "fe-ff"},
		{0xff, KeyRange{Start: 0xff << 56, End: 0}, "ff-"},
	}
	for _, tt := range tests {
		got := tt.r.KeyRange()
		if got != tt.want || got.String() != tt.text {
			t.Errorf("Region(%v).KeyRange() = %+v %q, want %+v %q", tt.r, got, got, tt.want, tt.text)
		}
	}
	// Every region's range holds exactly its own ksids and reports it back.
	for i := 0; i < 256; i++ {
		r := Region(i)
		kr := r.KeyRange()
		first, _ := MakeKeyspaceID(r, 0)
		last, _ := MakeKeyspaceID(r, hashMask)
		if !kr.Contains(first) || !kr.Contains(last) {
			t.Errorf("%v: range %v misses its first or last ksid", r, kr)
		}
		if r > 0 && kr.Contains(first-1) {
			t.Errorf("%v: range %v holds the previous region's last ksid", r, kr)
		}
		if r < 0xff && kr.Contains(last+1) {
			t.Errorf("%v: range %v holds the next region's first ksid", r, kr)
		}
		if got, ok := kr.Region(); !ok || got != r {
			t.Errorf("%v: KeyRange().Region() = %v, %v", r, got, ok)
		}
		if back := MustParseKeyRange(kr.String()); back != kr {
			t.Errorf("%v: %q parses back as %+v", r, kr.String(), back)
		}
	}
}
