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
		if got := EmailProblem(tc.in) == ""; got != tc.ok {
			t.Errorf("EmailProblem(%q): ok=%v, want %v (%s)", tc.in, got, tc.ok, EmailProblem(tc.in))
		}
	}
	if NormalizeEmail("  Ada@Example.COM\t") != "ada@example.com" {
		t.Error("normalizeEmail")
	}
}
