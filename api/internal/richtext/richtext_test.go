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
		// No images at all: an external one tracks its readers.
		{`<p>see <img src="https://tracker.example/p.png?u=1" alt="x"></p>`, "<p>see </p>", "<img"},
		{`<img src="data:image/png;base64,AAAA">`, "", "<img"},
		{`<map name="m"><area href="https://x.example/" coords="1,2,3"></map>`, "", "<area"},
		// What writers need stays.
		{`<ul><li>one</li></ul><table><tr><td>c</td></tr></table>`, "<li>one</li>", ""},
		{`<table><tr><td>c</td></tr></table>`, "<td>c</td>", ""},
		{`<blockquote cite="https://x.example/">q</blockquote><pre><code>x := 1</code></pre>`, "<code>x := 1</code>", ""},
		{`<h2>Title</h2><p><em>a</em> <strong>b</strong></p>`, "<h2>Title</h2>", ""},
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

func TestHasMarkup(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"Go engineer", false},
		{"C++ < Rust", false},
		{"<3 databases", false},
		{"AT&T & friends", false},
		{"a > b", false},
		{"", false},
		{"<img src=x onerror=alert(1)>", true},
		{"Bob<script>alert(1)</script>", true},
		{"a<b>c", true},
		{"</p>", true},
		{"<!-- hidden -->", true},
		{"<!DOCTYPE html>", true},
		{"x <br/> y", true},
	} {
		if got := HasMarkup(tc.in); got != tc.want {
			t.Errorf("HasMarkup(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := StripMarkup(`Ada <img src=x onerror=alert(1)><b>Lovelace</b> &amp; co`); got != "Ada Lovelace & co" {
		t.Errorf("StripMarkup: %q", got)
	}
}
