package directory

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// MaxEmail is the longest address accepted, in bytes (RFC 5321's path limit less the brackets).
const MaxEmail = 254

// NormalizeEmail is the one spelling of an address that uniqueness is decided on: what HashEmail
// hashes, and what registration, login, the directory and OAuth sign-in store and compare. Spaces
// around it go; the local part is case-folded in Unicode NFC (so the NFC and NFD spellings of
// "josé", or "JOSÉ", are one address); the domain becomes its IDNA A-label, ASCII in lower case
// (UTS 46 lookup: "MÜNCHEN.de" and "xn--mnchen-3ya.de" are one domain). A domain IDNA refuses is
// left case-folded, not ASCII, and EmailProblem refuses it.
//
// For an ASCII address this is exactly strings.ToLower(strings.TrimSpace(s)), the normalisation of
// earlier versions, so stored ASCII addresses and their directory hashes stay valid as they are.
func NormalizeEmail(s string) string {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return s // EmailProblem refuses it; folding would hide the bad bytes
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return foldText(s)
	}
	local, domain := foldText(s[:at]), s[at+1:]
	if a, err := idna.Lookup.ToASCII(domain); err == nil && a != "" {
		domain = strings.ToLower(a)
	} else {
		domain = foldText(domain)
	}
	return local + "@" + domain
}

// foldText is Unicode case folding in NFC. A cases.Caser keeps state, so each call makes its own.
func foldText(s string) string {
	return norm.NFC.String(cases.Fold().String(norm.NFC.String(s)))
}

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
	for i := 0; i < len(domain); i++ {
		if domain[i] >= utf8.RuneSelf {
			return bad // NormalizeEmail makes every valid domain ASCII (its IDNA A-label)
		}
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
