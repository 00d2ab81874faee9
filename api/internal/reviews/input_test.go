package reviews

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// decodeCreate is the handler's decoding of POST /reviews/ without the HTTP checks.
func decodeCreate(data []byte, san *richtext.Sanitizer) (createInput, error) {
	var req createRequest
	if err := rest.DecodeBytes(bytes.NewReader(data), &req); err != nil {
		return createInput{}, err
	}
	in, bad := req.normalize(san)
	if len(bad) > 0 {
		return createInput{}, apierror.Invalid(bad)
	}
	return in, nil
}

func decodePatch(data []byte, san *richtext.Sanitizer) (patchInput, error) {
	var req patchRequest
	if err := rest.DecodeBytes(bytes.NewReader(data), &req); err != nil {
		return patchInput{}, err
	}
	in, bad := req.normalize(san)
	if len(bad) > 0 {
		return patchInput{}, apierror.Invalid(bad)
	}
	return in, nil
}

// clientError fails the test unless err is a 4xx *apierror.Error: bad input must never be a 500.
func clientError(t *testing.T, err error) {
	t.Helper()
	var he *apierror.Error
	if !errors.As(err, &he) || he.Status < 400 || he.Status >= 500 {
		t.Fatalf("decoding error %v is not a 4xx", err)
	}
}

func checkComment(t *testing.T, c string) {
	t.Helper()
	if utf8.RuneCountInString(c) > MaxComment || strings.Contains(c, "\x00") || strings.Contains(strings.ToLower(c), "<script") {
		t.Fatalf("comment breaks the rules: %q", c)
	}
}

const (
	seedUser = "usr_065wzsb800g370x3nmh42kr104106105"
	seedJob  = "job_06h1fegj00g370x3nmh42kr2frcerdn9"
	seedCtr  = "ctr_06h367dbvrg370x3nmh42kr8s2r1a4jd"
)

func FuzzCreateDecoder(f *testing.F) {
	for _, s := range []string{
		`{"contract_id":"` + seedCtr + `","rating":5,"comment":"<b>good</b>"}`,
		`{"contract_id":"` + seedCtr + `","rating":0}`,
		`{"contract_id":"ctr_x","rating":"5","comment":null}`,
		`{"contract_id":"` + seedJob + `","reviewee_id":"` + seedUser + `","rating":5}`,
		`{"rating":1e400}`, `{"comment":"\u0000<script>x</script>"}`, `[]`, `{}`, `null`, `{"a":1}`, `{"rating":5} {}`,
	} {
		f.Add([]byte(s))
	}
	san := richtext.New()
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := decodeCreate(data, san)
		if err != nil {
			clientError(t, err)
			return
		}
		if in.rating < MinRating || in.rating > MaxRating {
			t.Fatalf("rating %d accepted", in.rating)
		}
		if in.contractID.Kind() != shardkey.KindContract {
			t.Fatalf("wrong kind accepted: %s", in.contractID)
		}
		checkComment(t, in.comment)
	})
}

func FuzzPatchDecoder(f *testing.F) {
	for _, s := range []string{`{"rating":3}`, `{"comment":"<i>x</i>"}`, `{"rating":null,"comment":null}`, `{"rating":-1}`, `{}`, `{"rating":3.0}`} {
		f.Add([]byte(s))
	}
	san := richtext.New()
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := decodePatch(data, san)
		if err != nil {
			clientError(t, err)
			return
		}
		if in.rating != nil && (*in.rating < MinRating || *in.rating > MaxRating) {
			t.Fatalf("rating %d accepted", *in.rating)
		}
		if in.comment != nil {
			checkComment(t, *in.comment)
		}
	})
}

func TestCreateValidation(t *testing.T) {
	san := richtext.New()
	for _, c := range []struct {
		body   string
		fields []string
	}{
		{`{}`, []string{"contract_id", "rating"}},
		{`{"contract_id":"` + seedJob + `","rating":7}`, []string{"contract_id", "rating"}},
		{`{"contract_id":"` + seedCtr + `","rating":3,"comment":"` + strings.Repeat("x", MaxComment+1) + `"}`, []string{"comment"}},
		{`{"job_id":"` + seedJob + `","reviewee_id":"` + seedUser + `","rating":3}`, []string{"job_id"}},
	} {
		_, err := decodeCreate([]byte(c.body), san)
		var he *apierror.Error
		if !errors.As(err, &he) || he.Status != 400 || len(he.Fields) != len(c.fields) {
			t.Errorf("%.60s: %v", c.body, err)
			continue
		}
		for _, f := range c.fields {
			if he.Fields[f] == "" {
				t.Errorf("%.60s: no error for %s in %v", c.body, f, he.Fields)
			}
		}
	}
	in, err := decodeCreate([]byte(`{"contract_id":"`+seedCtr+`","rating":3,"comment":"  <a href=\"javascript:x\">hi</a> "}`), san)
	if err != nil || in.comment != "hi" || in.rating != 3 || in.contractID.String() != seedCtr {
		t.Errorf("valid body: %+v %v", in, err)
	}
}

// Every route is documented, and every reference in the documentation resolves.
func TestRoutesAreDocumented(t *testing.T) {
	svc := &Service{}
	schemas := Schemas()
	refRe := regexp.MustCompile(`#/components/schemas/([A-Za-z]+)`)
	varRe := regexp.MustCompile(`\{([a-z_]+)\}`)
	names := map[string]bool{}
	for _, rt := range svc.Routes() {
		if names[rt.Name] {
			t.Errorf("route name %s used twice", rt.Name)
		}
		names[rt.Name] = true
		if rt.Doc["summary"] == "" || rt.Doc["responses"] == nil {
			t.Errorf("%s: no summary or responses", rt.Name)
		}
		doc := jsonString(t, rt.Doc)
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
		if rt.Access == feature.Public && (rt.Method != http.MethodGet || rt.Scope != ScopeRead) {
			t.Errorf("%s: only reads are public, and an API key reading needs %s", rt.Name, ScopeRead)
		}
	}
	for name, s := range schemas {
		for _, m := range refRe.FindAllStringSubmatch(jsonString(t, s), -1) {
			if _, ok := schemas[m[1]]; !ok {
				t.Errorf("schema %s refers to unknown schema %s", name, m[1])
			}
		}
	}
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func BenchmarkDecodeCreate(b *testing.B) {
	san := richtext.New()
	body := []byte(`{"contract_id":"` + seedCtr + `","rating":5,"comment":"<p>Great <b>work</b>, on time.</p>"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCreate(body, san); err != nil {
			b.Fatal(err)
		}
	}
}
