package skills

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []string
		want []string
		bad  []string
	}{
		{"nil", nil, []string{}, nil},
		{"case and spaces fold", []string{"Go", " go ", "GO", "Machine   Learning", "machine learning"}, []string{"go", "machine learning"}, nil},
		{"unicode case", []string{"Ünïcödé", "ÜNÏCÖDÉ"}, []string{"ünïcödé"}, nil},
		{"first position kept", []string{"sql", "Go", "SQL"}, []string{"sql", "go"}, nil},
		{"empty", []string{"ok", "", " \t "}, []string{"ok"}, []string{"skills.1", "skills.2"}},
		{"longest", []string{strings.Repeat("é", MaxLen)}, []string{strings.Repeat("é", MaxLen)}, nil},
		{"too long", []string{strings.Repeat("é", MaxLen+1)}, []string{}, []string{"skills.0"}},
		{"too long before folding is fine", []string{"  " + strings.Repeat("a", MaxLen) + "  "}, []string{strings.Repeat("a", MaxLen)}, nil},
		{"NUL", []string{"a\x00b"}, []string{}, []string{"skills.0"}},
		{"bell", []string{"a\u0007b"}, []string{}, []string{"skills.0"}},
		// The drift this package ended: profiles used to accept a comma, jobs refused it.
		{"comma", []string{"go,sql"}, []string{}, []string{"skills.0"}},
		{"comma among good ones", []string{"go", "a,b", "sql"}, []string{"go", "sql"}, []string{"skills.1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, bad := Normalize(c.in, "skills")
			keys := make([]string, 0, len(bad))
			for k := range bad {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if got == nil || !slices.Equal(got, c.want) || !slices.Equal(keys, c.bad) && len(keys)+len(c.bad) > 0 {
				t.Errorf("Normalize(%q) = %q %v, want %q %v", c.in, got, bad, c.want, c.bad)
			}
		})
	}
}

func TestNormalizeFieldName(t *testing.T) {
	_, bad := Normalize([]string{"go", ""}, "job.skills")
	if bad["job.skills.1"] != "must not be empty" || len(bad) != 1 {
		t.Fatalf("problems %v", bad)
	}
}

func TestNormalizeCountsDistinct(t *testing.T) {
	in := make([]string, 0, 2*MaxCount)
	for i := 0; i < MaxCount; i++ {
		s := "skill" + strings.Repeat("i", i%40) + string(rune('a'+i/40))
		in = append(in, s, strings.ToUpper(s))
	}
	out, bad := Normalize(in, "skills")
	if len(bad) > 0 || len(out) != MaxCount {
		t.Fatalf("%d distinct skills given twice: got %d, %v", MaxCount, len(out), bad)
	}
	_, bad = Normalize(append(in, "one more"), "skills")
	if bad["skills"] == "" {
		t.Fatalf("%d distinct skills: problems %v", MaxCount+1, bad)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"Go| go |GO", "a,b|c", "|  |\t", "a\x00b", strings.Repeat("é", MaxLen+1), "Machine   Learning|machine learning", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		in := strings.Split(joined, "|")
		out, bad := Normalize(in, "skills")
		if out == nil {
			t.Fatal("nil result")
		}
		if len(bad) > 0 {
			return
		}
		if len(out) > MaxCount || len(out) > len(in) {
			t.Fatalf("%d skills from %d", len(out), len(in))
		}
		seen := map[string]bool{}
		for _, s := range out {
			if s == "" || seen[s] || s != Fold(s) || strings.Contains(s, ",") || utf8.RuneCountInString(s) > MaxLen {
				t.Fatalf("accepted skill %q in %q", s, out)
			}
			seen[s] = true
		}
		// Normalising is idempotent: what was accepted once is accepted again unchanged.
		again, bad := Normalize(out, "skills")
		if len(bad) > 0 || !slices.Equal(again, out) {
			t.Fatalf("Normalize(%q) = %q %v", out, again, bad)
		}
	})
}
