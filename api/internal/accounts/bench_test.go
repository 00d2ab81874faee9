package accounts

import (
	"context"
	"testing"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// BenchmarkPasswordCheck compares a login for a user with one for nobody (the dummy hash) at the
// production costs: the two must take the same time, or the answer's timing tells which emails exist.
func BenchmarkPasswordCheck(b *testing.B) {
	ctx := context.Background()
	h, err := newHasher(DefaultPasswordParams(), 1)
	if err != nil {
		b.Fatal(err)
	}
	phc, err := h.hash(ctx, "a good long password")
	if err != nil {
		b.Fatal(err)
	}
	for name, stored := range map[string]string{"user": phc, "nobody": ""} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := h.check(ctx, "a wrong password", stored); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDirectory is the per-request cost of finding an email's claim (HMAC + region choice).
func BenchmarkDirectory(b *testing.B) {
	topo := topology.Example()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := directory.Locate(topo, directory.HashEmail(testPepper, "ada.lovelace@example.com")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCredentials is the work done on every API-key request before the database.
func BenchmarkParseCredentials(b *testing.B) {
	gen := shardkey.NewGenerator(nil, nil)
	keyID, _ := gen.New(shardkey.KindAPIKey, 0x4000000000000001)
	fam, _ := gen.New(shardkey.KindTokenFamily, 0x4000000000000001)
	key, _, _ := newAPIKey(keyID)
	tok, _ := newRefreshToken(fam)
	b.Run("api key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseAPIKey(key); err != nil {
				b.Fatal(err)
			}
			_ = secretHash(key)
		}
	})
	b.Run("refresh token", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseRefreshToken(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
