package richtext

import (
	"strings"
	"testing"
)

func TestSanitize(t *testing.T) {
	s := New()
	cases := []struct{ in, mustHave, mustNot string }{
		{`<p>Hello <b>world</b></p>`, `<b>world</b>`, ""},
		{`<script>alert(1)</script>ok`, "ok", "<script"},
		{`<a href="javascript:alert(1)">x</a>`, "x", "javascript:"},
		{`<img src=x onerror=alert(1)>`, "", "onerror"},
		{`<a href="https://8thdegree.example/">site</a>`, `rel="nofollow`, ""},
		{`  plain text  `, "plain text", "  "},
	}
	for _, c := range cases {
		got := s.Sanitize(c.in)
		if c.mustHave != "" && !strings.Contains(got, c.mustHave) {
			t.Errorf("Sanitize(%q) = %q, want it to keep %q", c.in, got, c.mustHave)
		}
		if c.mustNot != "" && strings.Contains(got, c.mustNot) {
			t.Errorf("Sanitize(%q) = %q, must not contain %q", c.in, got, c.mustNot)
		}
	}
}
