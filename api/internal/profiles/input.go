package profiles

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/geo"

	"golang.org/x/text/language"

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
	// Attributes are what the freelancer declares about themselves (e.g. {"gender": "woman"}), only
	// for the matching engine's fairness report; never public, never inferred.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// profileRequest is the body of PUT /users/profile. PUT replaces the whole profile, so an absent
// field takes its empty value (no skills, no rate, no country, not available).
type profileRequest struct {
	Headline   string            `json:"headline"`
	Bio        string            `json:"bio"`
	Skills     []string          `json:"skills"`
	HourlyRate *numberLiteral    `json:"hourly_rate"`
	Country    *string           `json:"country"`
	Available  bool              `json:"available"`
	Attributes map[string]string `json:"attributes"`
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
	case richtext.HasMarkup(out.Headline):
		bad["headline"] = richtext.PlainTextProblem
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

	if problem := checkAttributes(p.Attributes); problem != "" {
		bad["attributes"] = problem
	} else {
		out.Attributes = map[string]string{}
		for k, v := range p.Attributes {
			out.Attributes[k] = strings.TrimSpace(v)
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
		if !geo.IsCountry(c) {
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

// Defaults of core.settings; a user without a settings row has these.
const (
	DefaultLocale   = "en"
	DefaultTimezone = "UTC"
	maxLocale       = 35
	maxTimezone     = 64
)

// Notification kinds a user can switch on and off. Kept deliberately short: each one is a promise
// that some part of the product sends (or stops sending) that message.
const (
	NotifyEmailMessages   = "email_messages"    // a client or freelancer wrote to you
	NotifyEmailJobMatches = "email_job_matches" // new jobs matching your skills
	NotifyEmailReviews    = "email_reviews"     // someone reviewed you
	NotifyProductUpdates  = "product_updates"   // news about the product (opt-in)
)

// defaultNotifications returns each known kind with its default: what the product needs you to
// hear about is on, marketing is off until you opt in.
func defaultNotifications() map[string]bool {
	return map[string]bool{
		NotifyEmailMessages:   true,
		NotifyEmailJobMatches: true,
		NotifyEmailReviews:    true,
		NotifyProductUpdates:  false,
	}
}

// NotificationKinds lists the known notification keys, sorted.
func NotificationKinds() []string {
	return slices.Sorted(maps.Keys(defaultNotifications()))
}

// Settings are a user's private settings. Notifications always lists every known kind.
type Settings struct {
	Locale        string          `json:"locale"`
	Timezone      string          `json:"timezone"`
	Notifications map[string]bool `json:"notifications"`
}

// settingsPatch is the body of PATCH /users/settings: what is given replaces what is stored, and
// notifications merge key by key. A null value leaves the setting as it is.
type settingsPatch struct {
	Locale        *string          `json:"locale"`
	Timezone      *string          `json:"timezone"`
	Notifications map[string]*bool `json:"notifications"`
}

// localeSyntax is the database's CHECK on core.settings.locale.
var localeSyntax = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)

// normalize checks the patch and returns it in canonical form (locale "en-US", a loadable zone,
// notifications limited to known keys), or field errors.
func (p *settingsPatch) normalize() (settingsPatch, map[string]string) {
	bad := map[string]string{}
	var out settingsPatch
	if p.Locale != nil {
		if loc, ok := canonicalLocale(*p.Locale); ok {
			out.Locale = &loc
		} else {
			bad["locale"] = "must be a BCP 47 language tag, such as en or pt-BR"
		}
	}
	if p.Timezone != nil {
		if tz, ok := validTimezone(*p.Timezone); ok {
			out.Timezone = &tz
		} else {
			bad["timezone"] = "must be an IANA time zone name, such as Europe/Berlin or UTC"
		}
	}
	if len(p.Notifications) > 0 {
		known := defaultNotifications()
		out.Notifications = make(map[string]*bool, len(p.Notifications))
		for k, v := range p.Notifications {
			if _, ok := known[k]; !ok {
				bad["notifications."+k] = "unknown notification; known: " + strings.Join(NotificationKinds(), ", ")
				continue
			}
			if v != nil {
				out.Notifications[k] = v
			}
		}
	}
	return out, bad
}

// canonicalLocale parses s as a BCP 47 tag and returns its canonical spelling, provided that also
// fits the stored form (language and subtags only: no extensions or private use).
func canonicalLocale(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxLocale {
		return "", false
	}
	tag, err := language.Parse(s)
	if err != nil || tag == language.Und {
		return "", false
	}
	c := tag.String()
	if len(c) > maxLocale || !localeSyntax.MatchString(c) {
		return "", false
	}
	return c, true
}

// validTimezone accepts a name time.LoadLocation knows, except the two it gives a special meaning to
// ("" is UTC and "Local" is the server's zone, which says nothing about the user).
func validTimezone(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "Local" || len(s) > maxTimezone || hasControl(s) {
		return "", false
	}
	if _, err := time.LoadLocation(s); err != nil {
		return "", false
	}
	return s, true
}

// effectiveNotifications overlays stored preferences on the defaults and drops keys that are no
// longer known, so clients always see the same set.
func effectiveNotifications(stored map[string]bool) map[string]bool {
	out := defaultNotifications()
	for k, v := range stored {
		if _, ok := out[k]; ok {
			out[k] = v
		}
	}
	return out
}

// Limits of self-declared attributes.
const (
	MaxAttributes     = 8
	MaxAttributeValue = 64
)

var attributeKey = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// checkAttributes returns what is wrong with self-declared attributes, or "". Keys name the
// attribute (lower case); country and region are the profile's own groups already.
func checkAttributes(attrs map[string]string) string {
	if len(attrs) > MaxAttributes {
		return fmt.Sprintf("must have at most %d attributes", MaxAttributes)
	}
	for k, v := range attrs {
		v = strings.TrimSpace(v)
		switch {
		case !attributeKey.MatchString(k):
			return fmt.Sprintf("%q: names must be lower case letters, digits and underscores, 1 to 32, starting with a letter", k)
		case k == "country" || k == "region":
			return fmt.Sprintf("%q: the profile's own field, not a declared attribute", k)
		case v == "" || utf8.RuneCountInString(v) > MaxAttributeValue:
			return fmt.Sprintf("%q: values must be 1 to %d characters", k, MaxAttributeValue)
		case hasControl(v) || richtext.HasMarkup(v):
			return fmt.Sprintf("%q: values must be plain text", k)
		}
	}
	return ""
}
