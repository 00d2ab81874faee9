// Package richtext sanitises user-written rich text (job descriptions, review comments, bios) with
// bluemonday's user-generated-content policy: safe formatting and links stay, scripts, styles, event
// handlers and unsafe URLs go. Text is sanitised on the way in, so every reader gets safe HTML.
package richtext

import (
	"strings"

	"github.com/microcosm-cc/bluemonday"
)

// Sanitizer cleans rich text. It is safe for concurrent use.
type Sanitizer struct{ p *bluemonday.Policy }

// New returns the sanitiser for user-generated content.
func New() *Sanitizer {
	p := bluemonday.UGCPolicy()
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return &Sanitizer{p: p}
}

// Sanitize returns s with unsafe markup removed and surrounding space trimmed.
func (s *Sanitizer) Sanitize(text string) string {
	return strings.TrimSpace(s.p.Sanitize(text))
}
