package profiles

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/geo"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/internal/apierror"
)

// decodeProfile is the handler's decoding of PUT /users/profile without the HTTP checks.
func decodeProfile(data []byte, san *richtext.Sanitizer) (Profile, error) {
	var req profileRequest
	if err := rest.DecodeBytes(bytes.NewReader(data), &req); err != nil {
		return Profile{}, err
	}
	p, bad := req.normalize(san)
	if len(bad) > 0 {
		return Profile{}, apierror.Invalid(bad)
	}
	return p, nil
}

func decodeSettings(data []byte) (settingsPatch, error) {
	var req settingsPatch
	if err := rest.DecodeBytes(bytes.NewReader(data), &req); err != nil {
		return settingsPatch{}, err
	}
	p, bad := req.normalize()
	if len(bad) > 0 {
		return settingsPatch{}, apierror.Invalid(bad)
	}
	return p, nil
}

func clientError(t *testing.T, err error) {
	t.Helper()
	var he *apierror.Error
	if !errors.As(err, &he) || he.Status < 400 || he.Status >= 500 {
		t.Fatalf("decoding error %v is not a 4xx", err)
	}
}

var countryRe = regexp.MustCompile(`^[A-Z]{2}$`)

func FuzzProfileDecoder(f *testing.F) {
	for _, s := range []string{
		`{"headline":"Go dev","bio":"<p>x</p>","skills":["Go"," go ","SQL"],"hourly_rate":12.5,"country":"de","available":true}`,
		`{"hourly_rate":1e2}`, `{"hourly_rate":-0}`, `{"hourly_rate":0.001}`, `{"hourly_rate":"1"}`, `{"hourly_rate":1e999999999}`,
		`{"country":"eu"}`, `{"skills":["", "a\u0000b"]}`, `{"bio":"\u0000<script>x</script>"}`, `{}`, `null`, `[]`, `{"x":1}`,
	} {
		f.Add([]byte(s))
	}
	san := richtext.New()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeProfile(data, san)
		if err != nil {
			clientError(t, err)
			return
		}
		if utf8.RuneCountInString(p.Headline) > MaxHeadline || hasControl(p.Headline) {
			t.Fatalf("headline %q", p.Headline)
		}
		if utf8.RuneCountInString(p.Bio) > MaxBio || strings.Contains(p.Bio, "\x00") || strings.Contains(strings.ToLower(p.Bio), "<script") {
			t.Fatalf("bio %q", p.Bio)
		}
		if len(p.Skills) > skills.MaxCount {
			t.Fatalf("%d skills", len(p.Skills))
		}
		seen := map[string]bool{}
		for _, s := range p.Skills {
			if s == "" || seen[s] || s != strings.ToLower(s) || s != strings.TrimSpace(s) || utf8.RuneCountInString(s) > skills.MaxLen || hasControl(s) {
				t.Fatalf("skill %q in %q", s, p.Skills)
			}
			seen[s] = true
		}
		if p.HourlyRate != nil {
			r, ok := new(big.Rat).SetString(p.HourlyRate.String())
			maxRate, _ := new(big.Rat).SetString(MaxHourlyRate)
			if !ok || r.Sign() < 0 || r.Cmp(maxRate) > 0 || !regexp.MustCompile(`^[0-9]+\.[0-9]{2}$`).MatchString(p.HourlyRate.String()) {
				t.Fatalf("hourly rate %s", *p.HourlyRate)
			}
		}
		if p.Country != nil && (!countryRe.MatchString(*p.Country) || !geo.IsCountry(*p.Country)) {
			t.Fatalf("country %q", *p.Country)
		}
		// What the decoder accepts encodes as valid JSON (json.Number would refuse a bad number).
		if _, err := json.Marshal(p); err != nil {
			t.Fatalf("accepted profile does not encode: %v", err)
		}
	})
}

func FuzzSettingsDecoder(f *testing.F) {
	for _, s := range []string{
		`{"locale":"pt-br","timezone":"Europe/Berlin","notifications":{"product_updates":true}}`,
		`{"locale":"en-u-ca-x"}`, `{"timezone":"Local"}`, `{"timezone":"../x"}`, `{"notifications":{"x":true}}`,
		`{"notifications":{"email_reviews":null}}`, `{"locale":null}`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	locRe := regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	known := defaultNotifications()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeSettings(data)
		if err != nil {
			clientError(t, err)
			return
		}
		if p.Locale != nil && (!locRe.MatchString(*p.Locale) || len(*p.Locale) > maxLocale) {
			t.Fatalf("locale %q", *p.Locale)
		}
		if p.Timezone != nil {
			if _, err := time.LoadLocation(*p.Timezone); err != nil || *p.Timezone == "" || *p.Timezone == "Local" || len(*p.Timezone) > maxTimezone {
				t.Fatalf("timezone %q", *p.Timezone)
			}
		}
		for k, v := range p.Notifications {
			if _, ok := known[k]; !ok || v == nil {
				t.Fatalf("notification %q", k)
			}
		}
	})
}

func TestParseHourlyRate(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0.00", "-0": "0.00", "12": "12.00", "12.5": "12.50", "12.50": "12.50", "12.500": "12.50", "1e2": "100.00",
		"1.5E1": "15.00", "99999999.99": "99999999.99", "5e-2": "0.05",
		"-1": "", "0.001": "", "100000000": "", "1e999": "", "1e9999": "", "1.": "", "true": "", `"1"`: "", "null": "",
	} {
		got, problem := parseHourlyRate(&numberLiteral{raw: in, isNumber: in != "" && (in[0] == '-' || in[0] >= '0' && in[0] <= '9')})
		if got != want || (want == "") != (problem != "") {
			t.Errorf("parseHourlyRate(%s) = %q %q, want %q", in, got, problem, want)
		}
	}
}

func TestLocaleAndTimezone(t *testing.T) {
	for in, want := range map[string]string{
		"en": "en", "EN": "en", "pt-br": "pt-BR", "zh-Hant-TW": "zh-Hant-TW", "sr-latn": "sr-Latn", " fr ": "fr",
		"und": "", "": "", "english": "", "en-u-ca-buddhist": "", "x-private": "", "en_US": "en-US", strings.Repeat("a", 40): "",
	} {
		got, ok := canonicalLocale(in)
		if got != want || ok != (want != "") {
			t.Errorf("canonicalLocale(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for in, ok := range map[string]bool{
		"UTC": true, "Europe/Berlin": true, "America/Argentina/Buenos_Aires": true, "Asia/Kolkata": true,
		"Local": false, "": false, "Mars/Base": false, "/etc/localtime": false, "../../etc/passwd": false, "Europe/Berlin\n": true,
	} {
		if _, got := validTimezone(in); got != ok {
			t.Errorf("validTimezone(%q) = %v, want %v", in, got, ok)
		}
	}
}

// Every route is documented, and every reference in the documentation resolves.
func TestRoutesAreDocumented(t *testing.T) {
	svc := &Service{}
	schemas := Schemas()
	refRe := regexp.MustCompile(`#/components/schemas/([A-Za-z]+)`)
	varRe := regexp.MustCompile(`\{([a-z_]+)\}`)
	for _, rt := range svc.Routes() {
		b, err := json.Marshal(rt.Doc)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(b)
		if rt.Doc["summary"] == "" || rt.Doc["responses"] == nil {
			t.Errorf("%s: no summary or responses", rt.Name)
		}
		for _, m := range refRe.FindAllStringSubmatch(doc, -1) {
			if _, ok := schemas[m[1]]; !ok && m[1] != "Error" {
				t.Errorf("%s refers to unknown schema %s", rt.Name, m[1])
			}
		}
		for _, m := range varRe.FindAllStringSubmatch(rt.Path, -1) {
			if !strings.Contains(doc, `"name":"`+m[1]+`"`) {
				t.Errorf("%s: path parameter %s is not documented", rt.Name, m[1])
			}
		}
		// Only the public profile is public; the caller's own data needs credentials.
		if (rt.Access == feature.Public) != (rt.Name == "getPublicProfile") || rt.Access == feature.Public && rt.Method != http.MethodGet {
			t.Errorf("%s: access %v", rt.Name, rt.Access)
		}
	}
	for name, s := range schemas {
		b, _ := json.Marshal(s)
		for _, m := range refRe.FindAllStringSubmatch(string(b), -1) {
			if _, ok := schemas[m[1]]; !ok {
				t.Errorf("schema %s refers to unknown schema %s", name, m[1])
			}
		}
	}
}

func BenchmarkDecodeProfile(b *testing.B) {
	san := richtext.New()
	body := []byte(`{"headline":"Go engineer","bio":"<p>I build <b>distributed</b> systems.</p>","skills":["Go","PostgreSQL","Kubernetes","gRPC"],"hourly_rate":95.5,"country":"de","available":true}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeProfile(body, san); err != nil {
			b.Fatal(err)
		}
	}
}
