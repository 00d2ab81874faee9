package skills

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/richtext"
)

// Limits of a skill list. The schema bounds the number of skills (docs/schema.md: core.profiles and
// core.jobs hold at most 50); MaxLen, in characters, is the API's own bound.
const (
	MaxCount = 50
	MaxLen   = 50
)

// Fold returns the canonical form of one skill: trimmed, inner white space folded to one space,
// lower case. It does not check the skill; Normalize does.
func Fold(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// Normalize folds every skill of in, refuses the ones that are not skills and drops repeats (keeping
// the first position). Problems are keyed by field+"."+index for one skill, and by field for the
// count; the map is empty when in is acceptable. The result is never nil.
//
// Once more than MaxCount distinct skills have been seen it stops looking, so a huge list costs no
// more than MaxCount+1 skills' work; the skills after that point are not checked.
func Normalize(in []string, field string) ([]string, map[string]string) {
	bad := map[string]string{}
	out := make([]string, 0, min(len(in), MaxCount))
	seen := make(map[string]struct{}, min(len(in), MaxCount))
	for i, s := range in {
		name := field + "." + strconv.Itoa(i)
		s = Fold(s)
		switch {
		case s == "":
			bad[name] = "must not be empty"
			continue
		case utf8.RuneCountInString(s) > MaxLen:
			bad[name] = fmt.Sprintf("must be at most %d characters", MaxLen)
			continue
		case strings.IndexFunc(s, unicode.IsControl) >= 0:
			bad[name] = "must not contain control characters"
			continue
		case strings.Contains(s, ","):
			bad[name] = "must not contain a comma"
			continue
		case richtext.HasMarkup(s):
			bad[name] = richtext.PlainTextProblem
			continue
		}
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
		if len(out) > MaxCount {
			bad[field] = fmt.Sprintf("must hold at most %d distinct skills", MaxCount)
			break
		}
	}
	return out, bad
}

// Schema is the JSON Schema (OpenAPI) of a skill list as Normalize accepts it.
func Schema() map[string]any {
	return map[string]any{"type": "array", "maxItems": MaxCount,
		"items": map[string]any{"type": "string", "minLength": 1, "maxLength": MaxLen, "pattern": "^[^,]+$"}}
}
