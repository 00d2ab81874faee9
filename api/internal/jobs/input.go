package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/geo"

	"github.com/8thdegree/meridian/api/internal/richtext"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

var (
	errNotNumber    = errors.New("must be a number")
	errNegative     = errors.New("must be at least 0")
	errTooPrecise   = errors.New("must have at most 2 decimal places")
	errAmountTooBig = errors.New("must be at most 9999999999.99")
)

// parseCents reads a JSON number literal as a whole number of cents, exactly: no float rounding, and a
// bounded exponent so that "1e999999999" costs nothing.
func parseCents(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	ip, fp, hasDot := strings.Cut(mant, ".")
	if ip == "" || !allDigits(ip) || (hasDot && (fp == "" || !allDigits(fp))) || (len(ip) > 1 && ip[0] == '0') {
		return 0, errNotNumber
	}
	exp, expNeg := 0, false
	if hasExp {
		e := strings.TrimPrefix(expPart, "+")
		if expNeg = strings.HasPrefix(e, "-"); expNeg {
			e = e[1:]
		}
		if e == "" || !allDigits(e) {
			return 0, errNotNumber
		}
		if e = strings.TrimLeft(e, "0"); len(e) > 6 {
			e = "999999" // beyond any amount either way; keeps the arithmetic small
		}
		exp, _ = strconv.Atoi("0" + e)
		if expNeg {
			exp = -exp
		}
	}
	// value = digits × 10^(exp − len(fp)); in cents, × 10^2 more.
	digits := strings.TrimLeft(ip+fp, "0")
	if digits == "" {
		return 0, nil // zero, whatever its sign or exponent
	}
	if neg {
		return 0, errNegative
	}
	shift := 2 + exp - len(fp)
	if shift < 0 {
		drop := -shift
		if drop > len(digits) || strings.TrimLeft(digits[len(digits)-drop:], "0") != "" {
			return 0, errTooPrecise
		}
		digits = digits[:len(digits)-drop]
		shift = 0
	}
	if len(digits)+shift > 12 {
		return 0, errAmountTooBig
	}
	digits += strings.Repeat("0", shift)
	c, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || c > MaxCents {
		return 0, errAmountTooBig
	}
	return c, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// opt is a request field that remembers whether it was present and whether it was null, which a PATCH
// needs: absent leaves a value alone, null clears it (where clearing means something).
type opt[T any] struct {
	Set, Null bool
	V         T
}

func (o *opt[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.V)
}

// amount is a budget as sent: any JSON number, checked later so that the problem is reported with its
// field name. Anything but a number is a type error.
type amount struct{ raw string }

func (a *amount) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		a.raw = string(b)
		return nil
	}
	return &json.UnmarshalTypeError{Value: "non-number", Type: reflect.TypeFor[float64]()}
}

// jobFields are the fields a client may send, for both POST (create) and PATCH (update).
type jobFields struct {
	Title       opt[string]   `json:"title"`
	Description opt[string]   `json:"description"`
	Skills      opt[[]string] `json:"skills"`
	BudgetMin   opt[amount]   `json:"budget_min"`
	BudgetMax   opt[amount]   `json:"budget_max"`
	Currency    opt[string]   `json:"currency"`
	Remote      opt[bool]     `json:"remote"`
	Country     opt[string]   `json:"country"`
}

// createRequest is the body of POST /jobs/. (Not an embedding of jobFields: the decoder would name
// fields "jobFields.title" in its errors.)
type createRequest jobFields

// patchRequest is the body of PATCH /jobs/{id}: any subset of the create fields, plus status.
type patchRequest struct {
	Title       opt[string]   `json:"title"`
	Description opt[string]   `json:"description"`
	Skills      opt[[]string] `json:"skills"`
	BudgetMin   opt[amount]   `json:"budget_min"`
	BudgetMax   opt[amount]   `json:"budget_max"`
	Currency    opt[string]   `json:"currency"`
	Remote      opt[bool]     `json:"remote"`
	Country     opt[string]   `json:"country"`
	Status      opt[string]   `json:"status"`
}

func (r *patchRequest) fields() *jobFields {
	return &jobFields{Title: r.Title, Description: r.Description, Skills: r.Skills, BudgetMin: r.BudgetMin,
		BudgetMax: r.BudgetMax, Currency: r.Currency, Remote: r.Remote, Country: r.Country}
}

// sanitizer is what normalisation needs from richtext.
type sanitizer interface{ Sanitize(string) string }

// jobInput is a validated, normalised job change. For a create every field is set; for a patch the
// *Set flags and nil pointers say what stays as it is.
type jobInput struct {
	Title        *string
	Description  *string
	Skills       []string // nil: unchanged (a create stores an empty array)
	BudgetMinSet bool
	BudgetMin    *int64 // cents; nil is an open bound
	BudgetMaxSet bool
	BudgetMax    *int64
	Currency     *string
	Remote       *bool
	CountrySet   bool
	Country      *string // nil: NULL (unknown)
	Status       *string
}

func (in jobInput) empty() bool {
	return in.Title == nil && in.Description == nil && in.Skills == nil && !in.BudgetMinSet && !in.BudgetMaxSet &&
		in.Currency == nil && in.Remote == nil && !in.CountrySet && in.Status == nil
}

// normalize validates a create body and fills the defaults (no skills, open budget, USD, remote).
func (r *createRequest) normalize(san sanitizer) (jobInput, map[string]string) {
	bad := map[string]string{}
	if !r.Title.Set || r.Title.Null {
		bad["title"] = "is required"
	}
	in := (*jobFields)(r).normalize(san, bad)
	if in.Description == nil {
		in.Description = new(string)
	}
	if in.Skills == nil {
		in.Skills = []string{}
	}
	if in.Currency == nil {
		usd := "USD"
		in.Currency = &usd
	}
	if in.Remote == nil {
		yes := true
		in.Remote = &yes
	}
	in.BudgetMinSet, in.BudgetMaxSet = true, true
	if in.BudgetMin != nil && in.BudgetMax != nil && *in.BudgetMin > *in.BudgetMax {
		bad["budget_min"] = "must not be greater than budget_max"
	}
	return in, bad
}

// normalize validates a patch body. Null is accepted only where it means something: an open budget.
func (r *patchRequest) normalize(san sanitizer) (jobInput, map[string]string) {
	bad := map[string]string{}
	for name, f := range map[string]bool{
		"title": r.Title.Null, "description": r.Description.Null, "skills": r.Skills.Null,
		"currency": r.Currency.Null, "remote": r.Remote.Null, "status": r.Status.Null,
	} {
		if f {
			bad[name] = "must not be null"
		}
	}
	in := r.fields().normalize(san, bad)
	if r.Status.Set && !r.Status.Null {
		switch s := r.Status.V; s {
		case StatusOpen, StatusClosed, StatusCompleted:
			in.Status = &s
		default:
			bad["status"] = "must be one of open, closed, completed (in_progress comes with a job's first contract)"
		}
	}
	if in.BudgetMinSet && in.BudgetMaxSet && in.BudgetMin != nil && in.BudgetMax != nil && *in.BudgetMin > *in.BudgetMax {
		bad["budget_min"] = "must not be greater than budget_max"
	}
	return in, bad
}

// normalize checks and normalises the fields that are present and not null; bad collects problems.
func (f *jobFields) normalize(san sanitizer, bad map[string]string) jobInput {
	var in jobInput
	if f.Title.Set && !f.Title.Null {
		t := strings.TrimSpace(f.Title.V)
		switch n := utf8.RuneCountInString(t); {
		case n == 0:
			bad["title"] = "must not be blank"
		case n > MaxTitle:
			bad["title"] = fmt.Sprintf("must be at most %d characters", MaxTitle)
		case strings.IndexFunc(t, unicode.IsControl) >= 0:
			bad["title"] = "must not contain control characters"
		case richtext.HasMarkup(t):
			bad["title"] = richtext.PlainTextProblem
		default:
			in.Title = &t
		}
	}
	if f.Description.Set && !f.Description.Null {
		if strings.ContainsRune(f.Description.V, 0) {
			bad["description"] = "must not contain NUL characters"
		} else {
			// Limits apply to what is stored: the sanitised text.
			d := san.Sanitize(f.Description.V)
			if utf8.RuneCountInString(d) > MaxDescription {
				bad["description"] = fmt.Sprintf("must be at most %d characters (after sanitising)", MaxDescription)
			} else {
				in.Description = &d
			}
		}
	}
	if f.Skills.Set && !f.Skills.Null {
		list, problems := skills.Normalize(f.Skills.V, "skills")
		for k, v := range problems {
			bad[k] = v
		}
		if len(problems) == 0 {
			in.Skills = list
		}
	}
	for _, b := range []struct {
		name string
		f    opt[amount]
		set  *bool
		dst  **int64
	}{
		{"budget_min", f.BudgetMin, &in.BudgetMinSet, &in.BudgetMin},
		{"budget_max", f.BudgetMax, &in.BudgetMaxSet, &in.BudgetMax},
	} {
		if !b.f.Set {
			continue
		}
		*b.set = true
		if b.f.Null {
			continue
		}
		c, err := parseCents(b.f.V.raw)
		if err != nil {
			bad[b.name] = err.Error()
			continue
		}
		*b.dst = &c
	}
	if f.Currency.Set && !f.Currency.Null {
		c := strings.ToUpper(strings.TrimSpace(f.Currency.V))
		if !isCurrency(c) {
			bad["currency"] = "must be an ISO 4217 currency code such as USD or EUR"
		} else {
			in.Currency = &c
		}
	}
	if f.Remote.Set && !f.Remote.Null {
		v := f.Remote.V
		in.Remote = &v
	}
	if f.Country.Set {
		in.CountrySet = true
		if !f.Country.Null {
			c := strings.ToUpper(strings.TrimSpace(f.Country.V))
			if !geo.IsCountry(c) {
				bad["country"] = "must be an ISO 3166-1 alpha-2 country code, such as DE or US"
			} else {
				in.Country = &c
			}
		}
	}
	return in
}

// currencies lists the ISO 4217 codes of currencies one can pay in (no funds, metals or test codes),
// each followed by a space so that a lookup is a substring search for "XYZ ".
const currencies = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP " +
	"BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP " +
	"GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK " +
	"LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB " +
	"PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL " +
	"THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW " +
	"ZWG ZWL "

func isCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	// Codes sit at multiples of 4: a match elsewhere would straddle two codes.
	for i := 0; i+4 <= len(currencies); i += 4 {
		if currencies[i:i+3] == c {
			return true
		}
	}
	return false
}

// Bounds of a search request.
const (
	MaxQuery        = 500 // characters of q
	MaxSearchSkills = 20  // distinct skills in ?skills=
)

// searchParams is a parsed, validated search request.
type searchParams struct {
	Q      string
	Skills []string
	Limit  int
	Global bool
	// After is the position of the previous page's last item, when HasAfter.
	After    rankKey
	HasAfter bool
	// cursor is the cursor as sent (forwarded to peers); fp the query's fingerprint.
	cursor string
	fp     string
}

// parseSearch validates ?q=&skills=&limit=&cursor=&scope=.
func parseSearch(v url.Values) (searchParams, error) {
	bad := map[string]string{}
	p := searchParams{Limit: rest.DefaultLimit}
	p.Q = strings.TrimSpace(v.Get("q"))
	switch {
	case !utf8.ValidString(p.Q):
		bad["q"] = "must be UTF-8 text"
	case strings.ContainsRune(p.Q, 0):
		bad["q"] = "must not contain NUL characters"
	case utf8.RuneCountInString(p.Q) > MaxQuery:
		bad["q"] = fmt.Sprintf("must be at most %d characters", MaxQuery)
	}
	if raw := v.Get("skills"); raw != "" {
		if !utf8.ValidString(raw) {
			bad["skills"] = "must be UTF-8 text"
		} else {
			list, problems := skills.Normalize(queryList(raw), "skills")
			for k, msg := range problems {
				bad[k] = msg
			}
			if len(list) > MaxSearchSkills {
				bad["skills"] = fmt.Sprintf("must hold at most %d distinct skills", MaxSearchSkills)
			}
			p.Skills = list
		}
	}
	if p.Q == "" && len(p.Skills) == 0 && len(bad) == 0 {
		bad["q"] = "q or skills is required"
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > rest.MaxLimit {
			bad["limit"] = fmt.Sprintf("must be an integer from 1 to %d", rest.MaxLimit)
		}
		p.Limit = n
	}
	scope := v.Get("scope")
	switch scope {
	case "", "region":
		scope = "region"
	case "global":
		p.Global = true
	default:
		bad["scope"] = "must be region or global"
	}
	if len(bad) > 0 {
		return p, apierror.Invalid(bad)
	}
	p.fp = fingerprint("search", scope, p.Q, strings.Join(p.Skills, ","))
	if c := v.Get("cursor"); c != "" {
		var cur searchCursor
		if err := rest.DecodeCursor(c, &cur); err != nil {
			return p, err
		}
		if cur.V != 1 || cur.H != p.fp || cur.ID.Kind() != shardkey.KindJob || cur.R < 0 || math.IsInf(float64(cur.R), 0) {
			return p, apierror.Invalid(map[string]string{"cursor": "is not a cursor of this search"})
		}
		p.After, p.HasAfter, p.cursor = rankKey{Rank: cur.R, ID: cur.ID}, true, c
	}
	return p, nil
}

// values is p as query parameters, for a peer's part of a global search.
func (p searchParams) values() url.Values {
	v := url.Values{"limit": {strconv.Itoa(p.Limit)}, "scope": {"global"}}
	if p.Q != "" {
		v.Set("q", p.Q)
	}
	if len(p.Skills) > 0 {
		v.Set("skills", strings.Join(p.Skills, ","))
	}
	if p.cursor != "" {
		v.Set("cursor", p.cursor)
	}
	return v
}

// queryList splits a comma list (?skills=go,sql), dropping empty entries.
func queryList(v string) []string {
	if v == "" {
		return nil
	}
	parts := strings.Split(v, ",")
	out := parts[:0]
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out
}

// Limits of a job, from docs/schema.md (core.jobs); skills are bounded by package skills.
const (
	MaxTitle       = 200
	MaxDescription = 20000
	// MaxCents is numeric(12,2)'s largest value, 9 999 999 999.99, in cents.
	MaxCents = 999_999_999_999
)
