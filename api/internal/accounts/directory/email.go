package directory

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxEmail is the longest address accepted, in bytes (RFC 5321's path limit less the brackets).
const MaxEmail = 254

// NormalizeEmail is the one spelling of an address that uniqueness is decided on: what HashEmail
// hashes, and what accounts stores and compares.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// EmailProblem says what is wrong with a normalised address, or "" if nothing is. It accepts plain
// addr-specs (local@domain.tld) and refuses display names, quoted local parts, comments, domain
// literals and dotless domains: what a marketplace sends mail to.
func EmailProblem(norm string) string {
	const bad = "must be a valid email address"
	switch {
	case norm == "":
		return "is required"
	case len(norm) > MaxEmail:
		return fmt.Sprintf("must be at most %d bytes", MaxEmail)
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
