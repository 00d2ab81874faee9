package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/api/internal/skills"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// checkInput asserts what every accepted body guarantees before it reaches SQL.
func checkInput(t *testing.T, in jobInput) {
	t.Helper()
	if in.Title != nil {
		n := utf8.RuneCountInString(*in.Title)
		if n == 0 || n > MaxTitle || strings.TrimSpace(*in.Title) != *in.Title || strings.IndexFunc(*in.Title, unicode.IsControl) >= 0 {
			t.Fatalf("accepted title %q", *in.Title)
		}
	}
	if in.Description != nil && (utf8.RuneCountInString(*in.Description) > MaxDescription || strings.ContainsRune(*in.Description, 0)) {
		t.Fatalf("accepted description of %d characters", utf8.RuneCountInString(*in.Description))
	}
	if in.Skills != nil {
		again, bad := skills.Normalize(in.Skills, "skills")
		if len(bad) > 0 || !slices.Equal(again, in.Skills) || len(in.Skills) > skills.MaxCount {
			t.Fatalf("skills %q are not normalised (%v)", in.Skills, bad)
		}
		for _, s := range in.Skills {
			if s == "" || strings.Contains(s, ",") || s != strings.ToLower(s) || utf8.RuneCountInString(s) > skills.MaxLen {
				t.Fatalf("accepted skill %q", s)
			}
		}
	}
	for _, b := range []*int64{in.BudgetMin, in.BudgetMax} {
		if b != nil && (*b < 0 || *b > MaxCents) {
			t.Fatalf("accepted budget %d", *b)
		}
	}
	if in.BudgetMin != nil && in.BudgetMax != nil && *in.BudgetMin > *in.BudgetMax {
		t.Fatalf("accepted budgets %d > %d", *in.BudgetMin, *in.BudgetMax)
	}
	if in.Currency != nil && !isCurrency(*in.Currency) {
		t.Fatalf("accepted currency %q", *in.Currency)
	}
	if in.Status != nil && *in.Status != StatusOpen && *in.Status != StatusClosed && *in.Status != StatusCompleted {
		t.Fatalf("accepted status %q", *in.Status)
	}
}

var bodySeeds = []string{
	`{"title": "Go developer", "description": "<p>x</p>", "skills": ["Go", " go "], "budget_min": 1, "budget_max": 2.5, "currency": "eur", "remote": false}`,
	`{"title": null, "budget_min": null, "status": "closed"}`,
	`{"title": "x", "budget_min": 1e3, "budget_max": 1.005}`,
	`{"title": "\u0000", "description": "a\u0000", "skills": ["a,b", ""]}`,
	`{"skills": [1]}`, `{"budget_max": "1"}`, `[]`, `{}`, `{"title": "x"} x`, `{"nope": 1}`,
}

func FuzzCreateRequest(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	san := richtext.New()
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createRequest
		err := rest.DecodeBytes(bytes.NewReader(body), &req)
		if err != nil {
			var e *apierror.Error
			if !errors.As(err, &e) || e.Status/100 != 4 {
				t.Fatalf("decode error %v is not a client error", err)
			}
			return
		}
		in, bad := req.normalize(san)
		if len(bad) > 0 {
			return
		}
		if in.Title == nil || in.Description == nil || in.Skills == nil || in.Currency == nil || in.Remote == nil {
			t.Fatalf("accepted create lacks a field: %+v", in)
		}
		checkInput(t, in)
	})
}

func FuzzPatchRequest(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	san := richtext.New()
	f.Fuzz(func(t *testing.T, body []byte) {
		var req patchRequest
		if err := rest.DecodeBytes(bytes.NewReader(body), &req); err != nil {
			return
		}
		in, bad := req.normalize(san)
		if len(bad) > 0 {
			return
		}
		checkInput(t, in)
	})
}

func FuzzParseCents(f *testing.F) {
	for _, s := range []string{"0", "1500.5", "1e3", "1.005", "-1", "9999999999.99", "1e-2", "0e9999999", "12.30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCents(s)
		if err != nil {
			return
		}
		if c < 0 || c > MaxCents {
			t.Fatalf("parseCents(%q) = %d", s, c)
		}
		// Differential check against math/big, where the exponent is small enough for it to be cheap.
		if _, exp, ok := strings.Cut(strings.ToLower(s), "e"); !ok || len(exp) <= 4 {
			r, ok := new(big.Rat).SetString(s)
			if !ok {
				t.Fatalf("parseCents accepted %q, which math/big does not", s)
			}
			want := new(big.Rat).Mul(r, big.NewRat(100, 1))
			if !want.IsInt() || want.Num().Int64() != c {
				t.Fatalf("parseCents(%q) = %d, math/big says %s", s, c, want.RatString())
			}
		}
		b, _ := json.Marshal(Money(c))
		var back Money
		if err := json.Unmarshal(b, &back); err != nil || int64(back) != c {
			t.Fatalf("Money %d → %s → %d, %v", c, b, back, err)
		}
	})
}

func FuzzParseSearch(f *testing.F) {
	for _, s := range []string{"q=golang", "skills=go,sql&limit=5", "q=x&scope=global&cursor=abc", "q=%00", "skills=,,,", "limit=0",
		"q=a&cursor=eyJ2IjoxLCJyIjoxLCJpZCI6ImpvYl8wMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMCIsImgiOiJ4In0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseSearch(v)
		if err != nil {
			var e *apierror.Error
			if !errors.As(err, &e) || e.Status != 400 {
				t.Fatalf("parse error %v is not a 400", err)
			}
			return
		}
		if p.Limit < 1 || p.Limit > rest.MaxLimit || (p.Q == "" && len(p.Skills) == 0) || !utf8.ValidString(p.Q) ||
			strings.ContainsRune(p.Q, 0) || len(p.Skills) > MaxSearchSkills || p.fp == "" {
			t.Fatalf("accepted %+v", p)
		}
		if p.HasAfter && p.After.ID.Kind() != shardkey.KindJob {
			t.Fatalf("cursor with a %s ID", p.After.ID.Kind())
		}
		// What a page hands out, the next request takes back.
		id, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindJob, 0x40<<56)
		pg := p.page([]SearchItem{{Job: Job{ID: id}, Rank: 0.5}}, true, nil)
		next := v
		next.Set("cursor", pg.NextCursor)
		q, err := parseSearch(next)
		if err != nil || !q.HasAfter || q.After != (rankKey{Rank: 0.5, ID: id}) {
			t.Fatalf("the page's own cursor was refused: %v", err)
		}
	})
}

func FuzzListCursor(f *testing.F) {
	id, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindJob, 0x40<<56)
	f.Add(rest.EncodeCursor(listCursor{V: 1, T: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC), ID: id, H: "x"}))
	f.Add("")
	f.Add("e30")
	f.Fuzz(func(t *testing.T, s string) {
		var c listCursor
		if err := rest.DecodeCursor(s, &c); err != nil {
			return
		}
		// Anything decoded must encode again (a cursor the node could hand out).
		if c.ID.Kind().Valid() {
			if back := rest.EncodeCursor(c); back == "" {
				t.Fatalf("decoded cursor %+v does not encode", c)
			}
		}
	})
}
