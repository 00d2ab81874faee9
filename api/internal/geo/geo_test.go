package geo

import (
	"testing"

	"golang.org/x/text/language"
)

func TestCountries(t *testing.T) {
	if n := len(isoCountries) / 2; n != 249 || len(isoCountries)%2 != 0 {
		t.Fatalf("%d codes, want the 249 of ISO 3166-1", n)
	}
	for i := 0; i+3 < len(isoCountries); i += 2 {
		if isoCountries[i:i+2] >= isoCountries[i+2:i+4] {
			t.Fatalf("codes out of order at %s", isoCountries[i:i+4])
		}
	}
	// Every code is a country for CLDR too (a typo would not be).
	for i := 0; i < len(isoCountries); i += 2 {
		code := isoCountries[i : i+2]
		r, err := language.ParseRegion(code)
		if err != nil || !r.IsCountry() || r.String() != code {
			t.Errorf("%s is not a country for x/text: %v", code, err)
		}
	}
	for code, want := range map[string]bool{"DE": true, "US": true, "GB": true, "UK": false, "EU": false, "ZZ": false, "XK": false, "de": false, "D": false, "DEU": false, "": false} {
		if IsCountry(code) != want {
			t.Errorf("IsCountry(%q) = %v", code, !want)
		}
	}
}
