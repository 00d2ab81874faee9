package shardkey

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestNewKeyspaceID(t *testing.T) {
	// Golden values, computed outside Go (Python hashlib): changing them
	// re-homes every existing user, so they must never change for v1.
	tests := []struct {
		r        Region
		identity string
		want     KeyspaceID
	}{
		{0x20, "alice@example.com", 0x203383a3ad22414f},
		{0xff, "alice@example.com", 0xff3383a3ad22414f},
		{0x20, "", 0x202dc30efd3d2ccb},
		{0x00, "", 0x002dc30efd3d2ccb},
	}
	for _, tt := range tests {
		got := NewKeyspaceID(tt.r, []byte(tt.identity))
		if got != tt.want {
			t.Errorf("NewKeyspaceID(%v, %q) = %v, want %v", tt.r, tt.identity, got, tt.want)
		}
		if got.Region() != tt.r {
			t.Errorf("NewKeyspaceID(%v, %q).Region() = %v", tt.r, tt.identity, got.Region())
		}
	}
	// Identities longer than the stack buffer take the same derivation.
	long := []byte(strings.Repeat("x", 1000))
	sum := sha256.Sum256(append([]byte("meridian/ksid/v1\x00"), long...))
	want := KeyspaceID(0x40<<56 | binary.BigEndian.Uint64(sum[:8])>>8)
	if got := NewKeyspaceID(0x40, long); got != want {
		t.Errorf("NewKeyspaceID(long) = %v, want %v", got, want)
	}
	if NewKeyspaceID(0x20, []byte("a")) == NewKeyspaceID(0x20, []byte("b")) {
		t.Error("different identities gave the same ksid")
	}
}

func TestMakeKeyspaceID(t *testing.T) {
	tests := []struct {
		r       Region
		hash    uint64
		want    KeyspaceID
		wantErr bool
	}{
		{r: 0x00, hash: 0, want: 0},
		{r: 0x20, hash: 0x3383a3ad22414f, want: 0x203383a3ad22414f},
		{r: 0xff, hash: 1<<56 - 1, want: math.MaxUint64},
		{r: 0x20, hash: 1 << 56, wantErr: true},
		{r: 0x20, hash: math.MaxUint64, wantErr: true},
	}
	for _, tt := range tests {
		got, err := MakeKeyspaceID(tt.r, tt.hash)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidKeyspaceID) {
				t.Errorf("MakeKeyspaceID(%v, %#x) = %v, %v; want ErrInvalidKeyspaceID", tt.r, tt.hash, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("MakeKeyspaceID(%v, %#x) = %v, %v; want %v", tt.r, tt.hash, got, err, tt.want)
		}
		if got.Region() != tt.r || got.Hash() != tt.hash {
			t.Errorf("%v: Region, Hash = %v, %#x; want %v, %#x", got, got.Region(), got.Hash(), tt.r, tt.hash)
		}
	}
}

func TestKeyspaceIDParts(t *testing.T) {
	tests := []struct {
		k      KeyspaceID
		region Region
		hash   uint64
		moved  KeyspaceID // WithRegion(0x40)
	}{
		{0, 0x00, 0, 0x4000000000000000},
		{0x203383a3ad22414f, 0x20, 0x3383a3ad22414f, 0x403383a3ad22414f},
		{0x8000000000000001, 0x80, 1, 0x4000000000000001},
		{math.MaxUint64, 0xff, 1<<56 - 1, 0x40ffffffffffffff},
	}
	for _, tt := range tests {
		if got := tt.k.Region(); got != tt.region {
			t.Errorf("%v.Region() = %v, want %v", tt.k, got, tt.region)
		}
		if got := tt.k.Hash(); got != tt.hash {
			t.Errorf("%v.Hash() = %#x, want %#x", tt.k, got, tt.hash)
		}
		if got := tt.k.WithRegion(0x40); got != tt.moved {
			t.Errorf("%v.WithRegion(40) = %v, want %v", tt.k, got, tt.moved)
		}
		if got := tt.k.WithRegion(0x40).WithRegion(tt.region); got != tt.k {
			t.Errorf("%v: moving there and back gives %v", tt.k, got)
		}
	}
}

func TestKeyspaceIDBytes(t *testing.T) {
	tests := []struct {
		k    KeyspaceID
		want []byte
	}{
		{0, []byte{0, 0, 0, 0, 0, 0, 0, 0}},
		{0x203383a3ad22414f, []byte{0x20, 0x33, 0x83, 0xa3, 0xad, 0x22, 0x41, 0x4f}},
		{math.MaxUint64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		if got := tt.k.Bytes(); !bytes.Equal(got, tt.want) {
			t.Errorf("%v.Bytes() = %x, want %x", tt.k, got, tt.want)
		}
		if got := tt.k.AppendBytes([]byte("pk:")); !bytes.Equal(got, append([]byte("pk:"), tt.want...)) {
			t.Errorf("%v.AppendBytes = %x", tt.k, got)
		}
		back, err := KeyspaceIDFromBytes(tt.want)
		if err != nil || back != tt.k {
			t.Errorf("KeyspaceIDFromBytes(%x) = %v, %v; want %v", tt.want, back, err, tt.k)
		}
	}
	for _, bad := range [][]byte{nil, {}, make([]byte, 7), make([]byte, 9), make([]byte, 16)} {
		if _, err := KeyspaceIDFromBytes(bad); !errors.Is(err, ErrInvalidKeyspaceID) {
			t.Errorf("KeyspaceIDFromBytes(%d bytes) err = %v, want ErrInvalidKeyspaceID", len(bad), err)
		}
	}
}

// TestKeyspaceIDByteOrder is why ksids are stored as big-endian bytea: byte
// order is unsigned order, so keyranges are primary-key ranges. A signed
// bigint puts every region code >= 80 before region 00.
func TestKeyspaceIDByteOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		a, b := KeyspaceID(rng.Uint64()), KeyspaceID(rng.Uint64())
		if got, want := bytes.Compare(a.Bytes(), b.Bytes()), cmp.Compare(a, b); got != want {
			t.Fatalf("bytes order of %v, %v = %d, unsigned order = %d", a, b, got, want)
		}
	}
	hi, lo := KeyspaceID(0x80<<56), KeyspaceID(0x20<<56)
	if !(int64(hi) < int64(lo)) || bytes.Compare(hi.Bytes(), lo.Bytes()) != 1 {
		t.Error("the signed-bigint counter-example no longer holds; fix docs/keyspace.md")
	}
}

func TestKeyspaceIDText(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyspaceID
		canon   string
		wantErr bool
	}{
		{in: "0000000000000000", want: 0, canon: "0000000000000000"},
		{in: "203383a3ad22414f", want: 0x203383a3ad22414f, canon: "203383a3ad22414f"},
		{in: "203383A3AD22414F", want: 0x203383a3ad22414f, canon: "203383a3ad22414f"},
		{in: "ffffffffffffffff", want: math.MaxUint64, canon: "ffffffffffffffff"},
		{in: "", wantErr: true},
		{in: "203383a3ad22414", wantErr: true},   // 15 digits
		{in: "203383a3ad22414f0", wantErr: true}, // 17 digits
		{in: "0x203383a3ad2241", wantErr: true},
		{in: "+203383a3ad22414", wantErr: true},
		{in: "-203383a3ad22414", wantErr: true},
		{in: "2033_83a3ad22414", wantErr: true},
		{in: "203383a3ad22414g", wantErr: true},
		{in: " 203383a3ad22414", wantErr: true},
		{in: "203383a3ad22414\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseKeyspaceID(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidKeyspaceID) {
				t.Errorf("ParseKeyspaceID(%q) = %v, %v; want ErrInvalidKeyspaceID", tt.in, got, err)
			}
			var k KeyspaceID
			if err := k.UnmarshalText([]byte(tt.in)); !errors.Is(err, ErrInvalidKeyspaceID) {
				t.Errorf("UnmarshalText(%q) err = %v", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseKeyspaceID(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.canon {
			t.Errorf("%#x.String() = %q, want %q", uint64(got), got.String(), tt.canon)
		}
		text, _ := got.MarshalText()
		if string(text) != tt.canon {
			t.Errorf("%v.MarshalText() = %q, want %q", got, text, tt.canon)
		}
	}
}

func TestKeyspaceIDJSON(t *testing.T) {
	type row struct {
		Owner KeyspaceID `json:"owner"`
		Home  Region     `json:"home"`
		Range KeyRange   `json:"range"`
	}
	in := row{Owner: 0x803383a3ad22414f, Home: 0x80, Range: MustParseKeyRange("80-81")}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"owner":"803383a3ad22414f","home":"80","range":"80-81"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var out row
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip = %+v, %v; want %+v", out, err, in)
	}
}
