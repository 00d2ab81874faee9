package profiles

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/text/language"
)

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
