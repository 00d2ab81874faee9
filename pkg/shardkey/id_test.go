package shardkey

import (
	"bytes"
	"encoding/base32"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// crockfordEncoding is an independent oracle for the text form: RFC 4648
// base32 has the same bit order, only the alphabet differs.
var crockfordEncoding = base32.NewEncoding(crockford).WithPadding(base32.NoPadding)

func TestKind(t *testing.T) {
	tests := []struct {
		k      Kind
		valid  bool
		prefix string
		name   string
	}{
		{0, false, "", "Kind(0)"},
		{KindUser, true, "usr", "user"},
		{KindJob, true, "job", "job"},
		{KindReview, true, "rev", "review"},
		{KindAPIKey, true, "key", "api_key"},
		{KindTokenFamily, true, "tfm", "token_family"},
		{KindAudit, true, "aud", "audit"},
		{KindProposal, true, "prp", "proposal"},
		{KindContract, true, "ctr", "contract"},
		{9, false, "", "Kind(9)"},
		{255, false, "", "Kind(255)"},
	}
	for _, tt := range tests {
		if got := tt.k.Valid(); got != tt.valid {
			t.Errorf("Kind(%d).Valid() = %v", tt.k, got)
		}
		if got := tt.k.Prefix(); got != tt.prefix {
			t.Errorf("Kind(%d).Prefix() = %q, want %q", tt.k, got, tt.prefix)
		}
		if got := tt.k.String(); got != tt.name {
			t.Errorf("Kind(%d).String() = %q, want %q", tt.k, got, tt.name)
		}
		if tt.valid {
			if k, ok := kindFromPrefix(tt.prefix); !ok || k != tt.k {
				t.Errorf("kindFromPrefix(%q) = %v, %v", tt.prefix, k, ok)
			}
		}
	}
	// Kind values are stored in IDs: pin them.
	if KindUser != 1 || KindJob != 2 || KindReview != 3 || KindAPIKey != 4 || KindTokenFamily != 5 || KindAudit != 6 || KindProposal != 7 || KindContract != 8 {
		t.Error("kind values changed; they are stored in every ID")
	}
}

func TestIDLayout(t *testing.T) {
	const ms = 1700000000000
	owner := KeyspaceID(0x203383a3ad22414f)
	id := makeID(ms, owner, KindUser, 0x0102030405)
	want := []byte{
		0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // ms
		0x20, 0x33, 0x83, 0xa3, 0xad, 0x22, 0x41, 0x4f, // owner
		0x01,                         // kind
		0x01, 0x02, 0x03, 0x04, 0x05, // entropy
	}
	if !bytes.Equal(id[:], want) {
		t.Fatalf("layout = %x, want %x", id[:], want)
	}
	// Golden text, computed outside Go (Python base64.b32encode + alphabet).
	if got, want := id.String(), "usr_065wzsb800g370x3nmh42kr104106105"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if id.Kind() != KindUser || id.KeyspaceID() != owner {
		t.Errorf("Kind, KeyspaceID = %v, %v", id.Kind(), id.KeyspaceID())
	}
	if got, want := id.Time(), time.UnixMilli(ms).UTC(); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Time() = %v, want %v", got, want)
	}
	b := id.Bytes()
	b[0] = 0xee
	if id[0] == 0xee {
		t.Error("Bytes() aliases the ID")
	}
	if id.IsZero() || !(ID{}).IsZero() {
		t.Error("IsZero wrong")
	}
	max := makeID(maxIDMillis, KeyspaceID(^uint64(0)), KindContract, entropyMax)
	if max.Time().UnixMilli() != maxIDMillis || max[15] != 0xff || max[19] != 0xff || max.Kind() != KindContract {
		t.Errorf("max ID = %x", max[:])
	}
}

func TestIDTextRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 5000; i++ {
		id := randomID(rng)
		s := id.String()
		if len(s) != 36 || s[:3] != id.Kind().Prefix() || s[3] != '_' {
			t.Fatalf("String() = %q", s)
		}
		if want := crockfordEncoding.EncodeToString(id[:]); s[4:] != want {
			t.Fatalf("String() = %q, base32 oracle says %q", s, want)
		}
		back, err := ParseID(s)
		if err != nil || back != id {
			t.Fatalf("ParseID(%q) = %x, %v; want %x", s, back[:], err, id[:])
		}
		back, err = ParseIDOfKind(s, id.Kind())
		if err != nil || back != id {
			t.Fatalf("ParseIDOfKind(%q) = %x, %v", s, back[:], err)
		}
		back, err = IDFromBytes(id.Bytes())
		if err != nil || back != id {
			t.Fatalf("IDFromBytes = %x, %v", back[:], err)
		}
		text, err := id.MarshalText()
		if err != nil || string(text) != s {
			t.Fatalf("MarshalText = %q, %v", text, err)
		}
		var u ID
		if err := u.UnmarshalText(text); err != nil || u != id {
			t.Fatalf("UnmarshalText = %x, %v", u[:], err)
		}
	}
}

func randomID(rng *rand.Rand) ID {
	return makeID(rng.Uint64()&maxIDMillis, KeyspaceID(rng.Uint64()), Kind(1+rng.IntN(int(maxKind))), rng.Uint64()&entropyMax)
}

// TestIDTextOrder: for IDs of one kind, comparing text is comparing bytes.
func TestIDTextOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	ids := make([]ID, 2000)
	for i := range ids {
		ids[i] = randomID(rng)
		ids[i][14] = byte(KindJob)
		if i%3 == 1 { // near neighbours, which differ only in low bits
			ids[i] = ids[i-1]
			ids[i][19]++
		}
	}
	byBytes := slices.Clone(ids)
	slices.SortFunc(byBytes, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	byText := slices.Clone(ids)
	slices.SortFunc(byText, func(a, b ID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(byBytes, byText) {
		t.Fatal("text order differs from byte order")
	}
}

func TestParseIDInvalid(t *testing.T) {
	valid := makeID(1700000000000, 0x203383a3ad22414f, KindUser, 0x0102030405).String() // usr_065wzsb800g370x3nmh42kr104106105
	jobKindUnderUsr := makeID(1700000000000, 0x203383a3ad22414f, KindJob, 1).String()
	zero := crockfordEncoding.EncodeToString(make([]byte, 20))
	kind7 := make([]byte, 20)
	kind7[14] = 7
	for _, in := range []string{
		"",
		"usr_",
		"usr",
		valid[:35],
		valid + "0",
		strings.ToUpper(valid),
		"USR" + valid[3:],
		valid[:4] + strings.ToUpper(valid[4:]),
		valid[:10] + "i" + valid[11:], // Crockford alias of 1: not canonical
		valid[:10] + "l" + valid[11:],
		valid[:10] + "o" + valid[11:], // alias of 0
		valid[:10] + "u" + valid[11:],
		valid[:10] + "=" + valid[11:],
		valid[:10] + "\x00" + valid[11:],
		valid[:10] + "\xff" + valid[11:],
		"usr-" + valid[4:],
		"usr " + valid[4:],
		"xyz_" + valid[4:],
		"job" + valid[3:],           // prefix says job, kind byte says user
		"usr" + jobKindUnderUsr[3:], // the other way round
		"usr_" + zero,               // kind byte 0
		"aud_" + crockfordEncoding.EncodeToString(kind7),
		"invalid_" + zero, // what String writes for a bad ID
		" " + valid[1:],
		valid[:35] + "\n",
		"usr_065wzsb800g370x3nmh42kr10410610", // 31 chars
	} {
		got, err := ParseID(in)
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) = %x, %v; want ErrInvalidID", in, got[:], err)
		}
		var u ID
		if err := u.UnmarshalText([]byte(in)); !errors.Is(err, ErrInvalidID) || !u.IsZero() {
			t.Errorf("UnmarshalText(%q) = %v, and set %x", in, err, u[:])
		}
	}
	if _, err := ParseID(valid); err != nil {
		t.Fatalf("the valid base case does not parse: %v", err)
	}
}

func TestParseIDOfKind(t *testing.T) {
	id := makeID(1700000000000, 0x203383a3ad22414f, KindJob, 42)
	if got, err := ParseIDOfKind(id.String(), KindJob); err != nil || got != id {
		t.Errorf("ParseIDOfKind(job) = %v, %v", got, err)
	}
	_, err := ParseIDOfKind(id.String(), KindUser)
	if !errors.Is(err, ErrWrongKind) || errors.Is(err, ErrInvalidID) {
		t.Errorf("ParseIDOfKind(user) err = %v, want ErrWrongKind only", err)
	}
	if _, err := ParseIDOfKind("garbage", KindUser); !errors.Is(err, ErrInvalidID) {
		t.Errorf("ParseIDOfKind(garbage) err = %v, want ErrInvalidID", err)
	}
}

func TestIDFromBytes(t *testing.T) {
	good := makeID(1, 2, KindReview, 3)
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
	}{
		{name: "valid", in: good[:]},
		{name: "nil", in: nil, wantErr: true},
		{name: "19 bytes", in: good[:19], wantErr: true},
		{name: "21 bytes", in: append(good.Bytes(), 0), wantErr: true},
		{name: "zero", in: make([]byte, 20), wantErr: true},
		{name: "kind 9", in: func() []byte { b := good.Bytes(); b[14] = 9; return b }(), wantErr: true},
		{name: "kind 255", in: func() []byte { b := good.Bytes(); b[14] = 255; return b }(), wantErr: true},
	}
	for _, tt := range tests {
		got, err := IDFromBytes(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidID) {
				t.Errorf("%s: IDFromBytes = %x, %v; want ErrInvalidID", tt.name, got[:], err)
			}
			continue
		}
		if err != nil || got != good {
			t.Errorf("%s: IDFromBytes = %x, %v", tt.name, got[:], err)
		}
	}
}

func TestInvalidIDText(t *testing.T) {
	var zero ID
	if got, want := zero.String(), "invalid_"+strings.Repeat("0", 32); got != want {
		t.Errorf("zero.String() = %q, want %q", got, want)
	}
	if _, err := zero.MarshalText(); !errors.Is(err, ErrInvalidID) {
		t.Errorf("zero.MarshalText() err = %v, want ErrInvalidID", err)
	}
	// Optional IDs use omitzero; a zero ID that is not omitted fails loudly.
	type resp struct {
		ID       ID `json:"id"`
		ParentID ID `json:"parent_id,omitzero"`
	}
	id := makeID(1700000000000, 0x403383a3ad22414f, KindReview, 7)
	b, err := json.Marshal(resp{ID: id})
	if err != nil || string(b) != `{"id":"`+id.String()+`"}` {
		t.Errorf("json = %s, %v", b, err)
	}
	var back resp
	if err := json.Unmarshal(b, &back); err != nil || back.ID != id || !back.ParentID.IsZero() {
		t.Errorf("json round trip = %+v, %v", back, err)
	}
	if _, err := json.Marshal(resp{}); !errors.Is(err, ErrInvalidID) {
		t.Errorf("marshalling a zero ID: err = %v, want ErrInvalidID", err)
	}
}

func TestCrockfordDecodeTable(t *testing.T) {
	if len(crockfordDecode) != 256 {
		t.Fatalf("table has %d entries", len(crockfordDecode))
	}
	for c := 0; c < 256; c++ {
		want := byte(0xff)
		if i := strings.IndexByte(crockford, byte(c)); i >= 0 {
			want = byte(i)
		}
		if got := crockfordDecode[c]; got != want {
			t.Errorf("crockfordDecode[%q] = %#x, want %#x", rune(c), got, want)
		}
	}
	if !slices.IsSorted([]byte(crockford)) || len(crockford) != 32 {
		t.Error("the alphabet must be 32 characters in ASCII order, or text order breaks")
	}
}
