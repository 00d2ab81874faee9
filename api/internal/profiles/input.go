package profiles

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/api/internal/skills"
)

// Limits of core.profiles (docs/schema.md). Lengths are in characters, as char_length counts them.
// Skills are bounded by package skills.
const (
	MaxHeadline = 200
	MaxBio      = 10000
	// MaxHourlyRate is the largest value of numeric(10,2).
	MaxHourlyRate = "99999999.99"
)

// Profile is a user's own profile as the API shows it. HourlyRate is a decimal with two places
// (a JSON number, null when unset); Country is an ISO 3166-1 alpha-2 code or null.
type Profile struct {
	Headline   string       `json:"headline"`
	Bio        string       `json:"bio"`
	Skills     []string     `json:"skills"`
	HourlyRate *json.Number `json:"hourly_rate"`
	Country    *string      `json:"country"`
	Available  bool         `json:"available"`
}

// profileRequest is the body of PUT /users/profile. PUT replaces the whole profile, so an absent
// field takes its empty value (no skills, no rate, no country, not available).
type profileRequest struct {
	Headline   string         `json:"headline"`
	Bio        string         `json:"bio"`
	Skills     []string       `json:"skills"`
	HourlyRate *numberLiteral `json:"hourly_rate"`
	Country    *string        `json:"country"`
	Available  bool           `json:"available"`
}

// numberLiteral keeps a JSON value as written so that a decimal is checked exactly (0.1 is not a
// float here) and a value of the wrong type is a field error rather than a decoding failure.
type numberLiteral struct {
	raw      string
	isNumber bool
}

func (n *numberLiteral) UnmarshalJSON(b []byte) error {
	// The decoder has checked the syntax; a number literal starts with '-' or a digit.
	n.raw = string(b)
	n.isNumber = len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9')
	return nil
}

// decimalSyntax bounds what reaches math/big: a huge exponent (1e999999999) would otherwise make
// SetString build an enormous number.
var decimalSyntax = regexp.MustCompile(`^-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?$`)

// parseHourlyRate returns the canonical two-place form of n ("45.50").
func parseHourlyRate(n *numberLiteral) (string, string) {
	if !n.isNumber {
		return "", "must be a number"
	}
	if !decimalSyntax.MatchString(n.raw) {
		return "", "must be a plain decimal number"
	}
	r, ok := new(big.Rat).SetString(n.raw)
	if !ok {
		return "", "must be a number"
	}
	if r.Sign() < 0 {
		return "", "must not be negative"
	}
	if !new(big.Rat).Mul(r, big.NewRat(100, 1)).IsInt() {
		return "", "must have at most 2 decimal places"
	}
	maxRate, _ := new(big.Rat).SetString(MaxHourlyRate)
	if r.Cmp(maxRate) > 0 {
		return "", "must be at most " + MaxHourlyRate
	}
	return r.FloatString(2), ""
}

// normalize checks the request and returns the profile to store, or field errors.
func (p *profileRequest) normalize(san *richtext.Sanitizer) (Profile, map[string]string) {
	bad := map[string]string{}
	out := Profile{Available: p.Available}

	out.Headline = strings.TrimSpace(p.Headline)
	switch {
	case utf8.RuneCountInString(out.Headline) > MaxHeadline:
		bad["headline"] = fmt.Sprintf("must be at most %d characters", MaxHeadline)
	case hasControl(out.Headline):
		bad["headline"] = "must not contain control characters"
	}

	if utf8.RuneCountInString(p.Bio) > MaxBio {
		bad["bio"] = fmt.Sprintf("must be at most %d characters", MaxBio)
	} else {
		// PostgreSQL text cannot hold NUL; it carries no meaning in HTML either.
		out.Bio = san.Sanitize(strings.ReplaceAll(p.Bio, "\x00", ""))
		if utf8.RuneCountInString(out.Bio) > MaxBio {
			bad["bio"] = fmt.Sprintf("must be at most %d characters once its markup is made safe", MaxBio)
		}
	}

	list, problems := skills.Normalize(p.Skills, "skills")
	out.Skills = list
	for k, v := range problems {
		bad[k] = v
	}

	if p.HourlyRate != nil {
		rate, problem := parseHourlyRate(p.HourlyRate)
		if problem != "" {
			bad["hourly_rate"] = problem
		} else {
			n := json.Number(rate)
			out.HourlyRate = &n
		}
	}

	if p.Country != nil {
		c := strings.ToUpper(strings.TrimSpace(*p.Country))
		if !isCountry(c) {
			bad["country"] = "must be an ISO 3166-1 alpha-2 country code, such as DE or US"
		} else {
			out.Country = &c
		}
	}
	return out, bad
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}
