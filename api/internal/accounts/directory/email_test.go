package directory

import (
	"strings"
	"testing"
)

func TestEmailProblem(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"ada@example.com", true},
		{"ada.lovelace+tag@mail.example.co.uk", true},
		{"o'brien@example.ie", true},
		{"x@b.io", true},
		{"jörg@münchen.de", true},
		{"", false},
		{"ada", false},
		{"@example.com", false},
		{"ada@", false},
		{"ada@localhost", false},
		{"ada@example..com", false},
		{"ada@-example.com", false},
		{"ada@example.com.", false},
		{"ada@[127.0.0.1]", false},
		{`"ada lovelace"@example.com`, false},
		{"ada lovelace@example.com", false},
		{"ada <ada@example.com>", false},
		{"ada@example.com (comment)", false},
		{"ada@exa_mple.com", false},
		{strings.Repeat("a", 65) + "@example.com", false},
		{"a@" + strings.Repeat("b", 250) + ".com", false},
		{"ada@example.com\x00", false},
		{"\xffada@example.com", false},
	} {
		if got := EmailProblem(NormalizeEmail(tc.in)) == ""; got != tc.ok {
			t.Errorf("EmailProblem(NormalizeEmail(%q)): ok=%v, want %v (%s)", tc.in, got, tc.ok, EmailProblem(NormalizeEmail(tc.in)))
		}
	}
	// What NormalizeEmail gives must be what it is given again (stored values stay put).
	if p := EmailProblem("jörg@münchen.de"); p == "" {
		t.Error("a domain that is not in its A-label form passed")
	}
}

func TestNormalizeEmail(t *testing.T) {
	const (
		nfc = "jos\u00e9@example.com"  // é as one code point
		nfd = "jose\u0301@example.com" // e and a combining acute accent
	)
	for _, tc := range []struct{ in, want string }{
		{"  Ada@Example.COM\t", "ada@example.com"},
		{nfc, nfc},
		{nfd, nfc},
		{"JOS\u00c9@EXAMPLE.COM", nfc},
		{"JOSE\u0301@Example.com", nfc},
		{"STRASSE@example.de", "strasse@example.de"},
		{"Stra\u00dfe@example.de", "strasse@example.de"}, // full case folding: ß is ss
		{"j\u00f6rg@M\u00fcnchen.DE", "j\u00f6rg@xn--mnchen-3ya.de"},
		{"j\u00f6rg@mu\u0308nchen.de", "j\u00f6rg@xn--mnchen-3ya.de"},
		{"j\u00f6rg@XN--MNCHEN-3YA.de", "j\u00f6rg@xn--mnchen-3ya.de"},
		{"ada@\uff45xample.com", "ada@example.com"}, // a full-width letter maps to its ASCII form
		{"nobody", "nobody"},
	} {
		if got := NormalizeEmail(tc.in); got != tc.want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := NormalizeEmail(tc.want); got != tc.want {
			t.Errorf("NormalizeEmail is not idempotent on %q: %q", tc.want, got)
		}
	}
	// ASCII addresses normalise as before (lower case, trimmed): stored rows need no migration.
	for _, s := range []string{"Ada.Lovelace+Tag@Mail.Example.CO.UK", " o'Brien@EXAMPLE.ie ", "X@B.IO", "a-b_c@x-y.example.com"} {
		if got, old := NormalizeEmail(s), strings.ToLower(strings.TrimSpace(s)); got != old {
			t.Errorf("ASCII %q: %q, earlier %q", s, got, old)
		}
	}
}

// Normalising twice changes nothing more (a stored address is its own normal form), and a valid
// normalised address is ASCII in its domain.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"Ada@Example.COM", "jose\u0301@mu\u0308nchen.de", "Stra\u00dfe@x.de", "a@xn--mnchen-3ya.de", "\xff@x.io", "a@b@c", "ada@\uff45xample.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeEmail(s)
		if again := NormalizeEmail(n); again != n {
			t.Fatalf("NormalizeEmail(%q) = %q, but NormalizeEmail of that = %q", s, n, again)
		}
		if EmailProblem(n) == "" {
			at := strings.LastIndexByte(n, '@')
			for i := at + 1; i < len(n); i++ {
				if n[i] >= 0x80 {
					t.Fatalf("valid %q has a non-ASCII domain", n)
				}
			}
		}
	})
}
