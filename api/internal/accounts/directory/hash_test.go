package directory

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

var testPepper = []byte("test-email-pepper-0123456789")

func TestLocate(t *testing.T) {
	topo := topology.Example()
	// Regions in any document order give the same answer: the order is by code.
	shuffled := topo.Clone()
	shuffled.Regions[0], shuffled.Regions[2] = shuffled.Regions[2], shuffled.Regions[0]
	hits := map[string]int{}
	for i := range 3000 {
		email := "user" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + "@example.test" + string(rune('0'+i%10))
		h := HashEmail(testPepper, email)
		r, k, err := Locate(topo, h)
		if err != nil {
			t.Fatal(err)
		}
		r2, k2, _ := Locate(shuffled, h)
		if r.Name != r2.Name || k != k2 {
			t.Fatalf("region order changed the directory: %s %s", r.Name, r2.Name)
		}
		if k.Region() != r.Code || k.Hash() != binary.BigEndian.Uint64(h[:8])>>8 {
			t.Fatalf("claim ksid %s for %s", k, r.Name)
		}
		codes := []shardkey.Region{0x20, 0x40, 0x60}
		if want := codes[binary.BigEndian.Uint64(h[:8])%3]; r.Code != want {
			t.Fatalf("directory %s, want code %s", r.Code, want)
		}
		hits[r.Name]++
	}
	for _, r := range topo.Regions {
		if hits[r.Name] < 800 {
			t.Errorf("region %s holds %d of 3000 claims: the hash does not spread", r.Name, hits[r.Name])
		}
	}
	// The pepper keys the hash.
	if HashEmail(testPepper, "a@b.co") == HashEmail([]byte("another pepper, 16+"), "a@b.co") {
		t.Error("the pepper does not change the hash")
	}
	if _, _, err := Locate(&topology.Topology{}, Hash{}); err == nil {
		t.Error("no regions: no error")
	}
	h := HashEmail(testPepper, "a@b.co")
	if got, err := ParseHash(h.String()); err != nil || got != h {
		t.Errorf("ParseHash round trip: %v", err)
	}
	for _, bad := range []string{"", "00", strings.ToUpper(h.String()), h.String()[:63] + "g", h.String() + "00"} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

// FuzzClaimRequestBody: the body of a peer's claim never panics the decoder, a rejection is a 4xx, and
// an accepted claim has a canonical hash and a user ID.
func FuzzClaimRequestBody(f *testing.F) {
	for _, seed := range []string{
		`{"email_hash":"00","user_id":"usr_065wzsb800g370x3nmh42kr104106105","home_region":"us-east"}`,
		`{"email_hash":"` + strings.Repeat("ab", 32) + `","user_id":"usr_065wzsb800g370x3nmh42kr104106105","home_region":"us-east"}`,
		`{"email": null}`, `[]`, `{} {}`, `"x"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req claimRequest
		err := rest.DecodeBytes(bytes.NewReader(data), &req)
		if err != nil {
			var e *apierror.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("%q: a rejection that is not a 4xx: %v", data, err)
			}
			return
		}
		if req.hash.String() != req.EmailHash || req.UserID.Kind() != shardkey.KindUser {
			t.Fatalf("%q accepted, but a claim without a hash or user", data)
		}
	})
}
