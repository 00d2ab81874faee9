package directory

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Hash is the directory key of a normalised email: HMAC-SHA256 keyed with the pepper, so a
// leaked claim row cannot be reversed with a dictionary of addresses without the pepper.
type Hash [sha256.Size]byte

func HashEmail(pepper []byte, norm string) Hash {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(norm))
	var h Hash
	m.Sum(h[:0])
	return h
}

// HashIdentity is the directory key of an OAuth identity: the same keyed hash over a domain that no
// email can spell (an email has an '@' and no NUL), so identity and email claims share the directory
// and never collide.
func HashIdentity(pepper []byte, provider, subject string) Hash {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte("oauth-identity\x00"))
	m.Write([]byte(provider))
	m.Write([]byte{0})
	m.Write([]byte(subject))
	var h Hash
	m.Sum(h[:0])
	return h
}

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// RateKey is the part of the hash used in rate-limit keys (128 bits are plenty to tell emails apart).
func (h Hash) RateKey() string { return hex.EncodeToString(h[:16]) }

var ErrBadHash = errors.New("not a 64-digit hex email hash")

func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, ErrBadHash
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil || hex.EncodeToString(h[:]) != s {
		return h, ErrBadHash
	}
	return h, nil
}

// Locate says where the claim of an email hash lives: the directory region is the regions sorted
// by code, indexed by the hash's first 64 bits modulo their number, and the claim's ksid is that
// region's code over the hash's first 56 bits, so it lands on a shard of that region by keyrange.
func Locate(t *topology.Topology, h Hash) (topology.Region, shardkey.KeyspaceID, error) {
	if t == nil || len(t.Regions) == 0 {
		return topology.Region{}, 0, errors.New("directory: no regions in the topology")
	}
	regions := slices.Clone(t.Regions)
	slices.SortFunc(regions, func(a, b topology.Region) int { return int(a.Code) - int(b.Code) })
	v := binary.BigEndian.Uint64(h[:8])
	r := regions[v%uint64(len(regions))]
	k, err := shardkey.MakeKeyspaceID(r.Code, v>>8)
	if err != nil {
		return topology.Region{}, 0, err
	}
	return r, k, nil
}
