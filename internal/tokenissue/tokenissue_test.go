package tokenissue_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

var (
	issueCfg  = tokenissue.Config{Issuer: "https://issuer.test", Audience: "meridian-api", TTL: 15 * time.Minute}
	verifyCfg = accesstoken.Config{Issuer: "https://issuer.test", Audience: "meridian-api", CacheSize: 64}
)

func subject(t *testing.T) accesstoken.Subject {
	t.Helper()
	k := shardkey.NewKeyspaceID(0x40, []byte("someone"))
	id, err := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, k)
	if err != nil {
		t.Fatal(err)
	}
	return accesstoken.Subject{UserID: id, KSID: k, Role: "client", Region: "eu-west"}
}

func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	old, _ := tokenissue.GenerateKey()
	if err := tokenissue.WriteKeyFile(filepath.Join(dir, "2026-01-01.pem"), old); err != nil {
		t.Fatal(err)
	}
	ks1, err := tokenissue.LoadKeyDir(dir)
	if err != nil || ks1.SigningKeyID() != old.ID {
		t.Fatalf("LoadKeyDir: %v", err)
	}
	t1, _ := tokenissue.New(issueCfg, ks1, nil)
	before, _, _ := t1.Issue(subject(t))
	next, _ := tokenissue.GenerateKey()
	if err := tokenissue.WriteKeyFile(filepath.Join(dir, "2026-06-01.pem"), next); err != nil {
		t.Fatal(err)
	}
	ks2, err := tokenissue.LoadKeyDir(dir)
	if err != nil || ks2.SigningKeyID() != next.ID {
		t.Fatalf("after rotation the newest file must sign: %v", err)
	}
	v2, _ := accesstoken.NewVerifier(verifyCfg, ks2.Public(), nil)
	if _, err := v2.Verify(before); err != nil {
		t.Fatalf("a token signed with the previous key no longer verifies: %v", err)
	}
	t2, _ := tokenissue.New(issueCfg, ks2, nil)
	after, _, _ := t2.Issue(subject(t))
	// A router holding only the published keys verifies both.
	pub, err := accesstoken.ParseJWKS(ks2.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := accesstoken.NewVerifier(verifyCfg, pub, nil)
	for _, tok := range []string{before, after} {
		if _, err := verifier.Verify(tok); err != nil {
			t.Fatalf("verify with the JWKS: %v", err)
		}
	}
	// A verify-only set cannot issue: accesstoken has no Issue and no private keys, so the type
	// system refuses what the old ErrNoSigningKey refused at run time.
	if strings.Contains(string(ks2.JWKS()), `"d"`) {
		t.Fatal("the JWKS contains private key material")
	}
	if err := os.WriteFile(filepath.Join(dir, "zz.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tokenissue.LoadKeyDir(dir); err == nil {
		t.Fatal("a bad key file was accepted")
	}
	if _, err := tokenissue.LoadKeyDir(t.TempDir()); err == nil {
		t.Fatal("an empty key folder was accepted")
	}
}

func TestConfigAndKeys(t *testing.T) {
	k, _ := tokenissue.GenerateKey()
	if _, err := tokenissue.NewSigningKeys(tokenissue.Key{ID: k.ID, Public: k.Public}); err == nil {
		t.Error("a key without its private half was accepted as the signing key")
	}
	ks, _ := tokenissue.NewSigningKeys(k)
	for name, cfg := range map[string]tokenissue.Config{
		"Issuer":   {Audience: "a", TTL: time.Minute},
		"Audience": {Issuer: "i", TTL: time.Minute},
		"TTL":      {Issuer: "i", Audience: "a"},
	} {
		if _, err := tokenissue.New(cfg, ks, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("no %s: %v", name, err)
		}
	}
}

// A token names the login it descends from (auth_time) and its session (sid); one without them
// verifies with both zero.
func TestAuthTimeAndSession(t *testing.T) {
	k, _ := tokenissue.GenerateKey()
	ks, _ := tokenissue.NewSigningKeys(k)
	iss, _ := tokenissue.New(issueCfg, ks, nil)
	v, _ := accesstoken.NewVerifier(verifyCfg, ks.Public(), nil)
	s := subject(t)
	fam, err := shardkey.NewGenerator(nil, nil).New(shardkey.KindTokenFamily, s.KSID)
	if err != nil {
		t.Fatal(err)
	}
	with := s
	with.AuthTime, with.Session = time.Now().Add(-time.Hour).Truncate(time.Second), fam
	for _, want := range []accesstoken.Subject{with, s} {
		tok, _, err := iss.Issue(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if !got.AuthTime.Equal(want.AuthTime) || got.Session != want.Session {
			t.Errorf("issued auth_time %v sid %v, verified %v %v", want.AuthTime, want.Session, got.AuthTime, got.Session)
		}
	}
}
