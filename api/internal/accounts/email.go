package accounts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// maxEmail is the longest address accepted, in bytes (RFC 5321's path limit less the brackets).
const maxEmail = 254

// normalizeEmail is the one spelling of an address that uniqueness is decided on.
func normalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// emailProblem says what is wrong with a normalised address, or "" if nothing is. It accepts plain
// addr-specs (local@domain.tld) and refuses display names, quoted local parts, comments, domain
// literals and dotless domains: what a marketplace sends mail to.
func emailProblem(norm string) string {
	const bad = "must be a valid email address"
	switch {
	case norm == "":
		return "is required"
	case len(norm) > maxEmail:
		return fmt.Sprintf("must be at most %d bytes", maxEmail)
	case !utf8.ValidString(norm):
		return bad
	}
	addr, err := mail.ParseAddress(norm)
	if err != nil || addr.Name != "" || addr.Address != norm {
		return bad
	}
	at := strings.LastIndexByte(norm, '@')
	local, domain := norm[:at], norm[at+1:]
	if at < 1 || len(local) > 64 || strings.ContainsAny(local, `"\ `) {
		return bad
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return bad
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return bad
		}
		for _, r := range l {
			if r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				return bad
			}
		}
	}
	return ""
}

// emailHash is the directory key of a normalised email: HMAC-SHA256 keyed with the pepper, so a
// leaked claim row cannot be reversed with a dictionary of addresses without the pepper.
type emailHash [sha256.Size]byte

func hashEmail(pepper []byte, norm string) emailHash {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(norm))
	var h emailHash
	m.Sum(h[:0])
	return h
}

func (h emailHash) String() string { return hex.EncodeToString(h[:]) }

// rateKey is the part of the hash used in rate-limit keys (128 bits are plenty to tell emails apart).
func (h emailHash) rateKey() string { return hex.EncodeToString(h[:16]) }

var errBadEmailHash = errors.New("not a 64-digit hex email hash")

func parseEmailHash(s string) (emailHash, error) {
	var h emailHash
	if len(s) != 2*len(h) {
		return h, errBadEmailHash
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil || hex.EncodeToString(h[:]) != s {
		return h, errBadEmailHash
	}
	return h, nil
}

// directory says where the claim of an email hash lives: the directory region is the regions sorted
// by code, indexed by the hash's first 64 bits modulo their number, and the claim's ksid is that
// region's code over the hash's first 56 bits, so it lands on a shard of that region by keyrange.
func directory(t *topology.Topology, h emailHash) (topology.Region, shardkey.KeyspaceID, error) {
	if t == nil || len(t.Regions) == 0 {
		return topology.Region{}, 0, errors.New("accounts: no regions in the topology")
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
