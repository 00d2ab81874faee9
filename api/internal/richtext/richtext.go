// Package richtext keeps user-written text safe to show. Rich text (job descriptions, review
// comments, bios) is sanitised with a bluemonday policy: formatting, lists, tables, quotes, code and
// links stay (links get rel="nofollow noopener" and open in a new tab); scripts, styles, event
// handlers, unsafe URLs, forms, embedded content and images go. Text is sanitised on the way in, so
// every reader gets safe HTML. Plain-text fields (names, headlines, titles, skills) hold no markup at
// all: HasMarkup finds it, and the API refuses it with a 400 naming the field.
package richtext

import (
	"errors"
	"io"
	"regexp"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/net/html"
)

// Sanitizer cleans rich text. It is safe for concurrent use.
type Sanitizer struct{ p *bluemonday.Policy }

// New returns the sanitiser for user-generated content: bluemonday's UGC policy without images and
// image maps. An image in rich text is fetched from wherever its writer chose by every reader's
// browser, which tells the writer (or whoever runs that server) who read the text, from where and
// when, and shows whatever the server sends that day, whatever a reviewer approved; the platform
// hosts no images, so none are kept. The policy is spelt out here because bluemonday cannot take an
// element away from one of its stock policies.
func New() *Sanitizer {
	p := bluemonday.NewPolicy()
	p.AllowStandardAttributes()
	p.AllowStandardURLs()
	p.AllowElements("article", "aside", "figure", "section", "summary", "hgroup",
		"h1", "h2", "h3", "h4", "h5", "h6", "br", "div", "hr", "p", "span", "wbr",
		"abbr", "acronym", "cite", "code", "dfn", "em", "figcaption", "mark", "s", "samp", "strong", "sub", "sup", "var",
		"b", "i", "pre", "small", "strike", "tt", "u", "rp", "rt", "ruby")
	p.AllowAttrs("open").Matching(regexp.MustCompile(`(?i)^(|open)$`)).OnElements("details")
	p.AllowAttrs("cite").OnElements("blockquote", "q")
	p.AllowAttrs("href").OnElements("a")
	p.AllowAttrs("datetime").Matching(bluemonday.ISO8601).OnElements("time", "del", "ins")
	p.AllowAttrs("cite").Matching(bluemonday.Paragraph).OnElements("del", "ins")
	p.AllowAttrs("dir").Matching(bluemonday.Direction).OnElements("bdi", "bdo")
	p.AllowLists()
	p.AllowTables()
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return &Sanitizer{p: p}
}

// PlainTextProblem is the field problem of a plain-text field that holds markup.
const PlainTextProblem = "must be plain text, without HTML markup"

// HasMarkup reports whether s holds anything an HTML parser reads as markup: a start or end tag, a
// comment or a doctype. Text such as "C++ < Rust", "<3" or "AT&T" is not markup; "a<b>" is.
func HasMarkup(s string) bool {
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return !errors.Is(z.Err(), io.EOF)
		case html.TextToken:
		default:
			return true
		}
	}
}

// StripMarkup returns the text of s without its markup, for text that cannot be refused (a name an
// OAuth provider asserts). Entities are decoded: what is left is plain text, to be escaped by
// whoever shows it, like every plain-text field.
func StripMarkup(s string) string {
	var b strings.Builder
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return b.String()
		case html.TextToken:
			b.Write(z.Text())
		}
	}
}

// Sanitize returns s with unsafe markup removed and surrounding space trimmed.
func (s *Sanitizer) Sanitize(text string) string {
	return strings.TrimSpace(s.p.Sanitize(text))
}
