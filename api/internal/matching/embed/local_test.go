package embed

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func norm2(v []float32) float64 { return math.Sqrt(dot(v, v)) }

func embedDocs(t *testing.T, e Embedder, docs ...Doc) [][]float32 {
	t.Helper()
	vs, err := e.EmbedDocs(context.Background(), docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(docs) {
		t.Fatalf("%d vectors for %d documents", len(vs), len(docs))
	}
	return vs
}

var (
	goBackend = Doc{
		Title:  "Senior Go backend engineer",
		Body:   "I build backend services in Go: REST and gRPC APIs on PostgreSQL, deployed on Kubernetes.",
		Skills: []string{"go", "postgresql", "kubernetes", "grpc"},
	}
	goJob = Doc{
		Title:  "Backend developer for our payments API",
		Body:   "We need a Go developer to extend a REST API backed by PostgreSQL. Kubernetes is a plus.",
		Skills: []string{"go", "postgresql", "rest"},
	}
	pythonData = Doc{
		Title:  "Data scientist",
		Body:   "Machine learning models in Python with pandas and scikit-learn; dashboards for the sales team.",
		Skills: []string{"python", "machine learning", "pandas"},
	}
	illustrator = Doc{
		Title:  "Children's book illustrator",
		Body:   "Watercolour and ink illustrations, character design, covers for picture books.",
		Skills: []string{"illustration", "watercolour", "character design"},
	}
	mlJob = Doc{
		Title:  "Machine learning engineer",
		Body:   "Train and ship machine learning models for demand forecasting, in Python.",
		Skills: []string{"python", "machine learning", "forecasting"},
	}
)

func TestLocalSimilarDocumentsAreCloser(t *testing.T) {
	l := NewLocal(LocalDims)
	vs := embedDocs(t, l, goBackend, goJob, pythonData, illustrator, mlJob)
	be, job, data, ill, ml := vs[0], vs[1], vs[2], vs[3], vs[4]
	for _, c := range []struct {
		name             string
		near, far1, far2 []float32
		anchor           []float32
		minNear, maxFar  float64
	}{
		{"go profile: go job vs data and illustration", job, data, ill, be, 0.3, 0.1},
		{"ml job: data profile vs go and illustration", data, be, ill, ml, 0.3, 0.1},
	} {
		near, far1, far2 := dot(c.anchor, c.near), dot(c.anchor, c.far1), dot(c.anchor, c.far2)
		t.Logf("%s: near %.3f, far %.3f and %.3f", c.name, near, far1, far2)
		if near < c.minNear {
			t.Errorf("%s: related documents only %.3f alike, want at least %.2f", c.name, near, c.minNear)
		}
		if math.Abs(far1) > c.maxFar || math.Abs(far2) > c.maxFar {
			t.Errorf("%s: unrelated documents %.3f and %.3f alike, want at most %.2f", c.name, far1, far2, c.maxFar)
		}
	}
}

// Skills weigh more than body words: two documents that share skills and nothing else are closer than
// two that share as many body words and no skill.
func TestLocalSkillsWeighMore(t *testing.T) {
	l := NewLocal(LocalDims)
	vs := embedDocs(t, l,
		Doc{Body: "friendly reliable communicator", Skills: []string{"rust", "webassembly"}},
		Doc{Body: "punctual careful planner", Skills: []string{"rust", "webassembly"}},
		Doc{Body: "friendly reliable designer", Skills: []string{"figma", "branding"}},
	)
	sharedSkills, sharedWords := dot(vs[0], vs[1]), dot(vs[0], vs[2])
	if sharedSkills <= sharedWords {
		t.Errorf("shared skills %.3f, shared body words %.3f: skills should weigh more", sharedSkills, sharedWords)
	}
	// A skill named in the body meets the same skill listed: its words count as words.
	vs = embedDocs(t, l,
		Doc{Body: "migrating our services to kubernetes"},
		Doc{Body: "site reliability", Skills: []string{"kubernetes"}},
		Doc{Body: "site reliability", Skills: []string{"terraform"}},
	)
	if with, without := dot(vs[0], vs[1]), dot(vs[0], vs[2]); with <= without+0.1 {
		t.Errorf("a body naming the skill: %.3f with it, %.3f without", with, without)
	}
}

func TestLocalIsDeterministicAndUnit(t *testing.T) {
	docs := []Doc{goBackend, goJob, pythonData, illustrator, mlJob, {Body: "ça marche: café, naïve résumé"}}
	for _, dims := range []int{1, 8, 64, LocalDims, 1536} {
		a := embedDocs(t, NewLocal(dims), docs...)
		b := embedDocs(t, NewLocal(dims), docs...)
		for i := range docs {
			if len(a[i]) != dims {
				t.Fatalf("dims %d: vector of %d", dims, len(a[i]))
			}
			if !slices.Equal(a[i], b[i]) {
				t.Fatalf("dims %d, doc %d: two embedders disagree", dims, i)
			}
			if n := norm2(a[i]); math.Abs(n-1) > 1e-5 {
				t.Fatalf("dims %d, doc %d: norm %v", dims, i, n)
			}
		}
	}
	// The order of skills, their case and repeats change nothing.
	l := NewLocal(LocalDims)
	vs := embedDocs(t, l, goBackend, Doc{Title: goBackend.Title, Body: goBackend.Body,
		Skills: []string{"GRPC", "kubernetes", " Go", "postgresql", "go"}})
	if !slices.Equal(vs[0], vs[1]) {
		t.Error("reordered, re-cased and repeated skills changed the vector")
	}
	// A fixed point: the recipe of this space version must not drift unnoticed. If this fails on
	// purpose, bump LocalVersion (a new space) and update the value.
	v := embedDocs(t, NewLocal(16), Doc{Title: "Go developer", Skills: []string{"go"}})[0]
	want := []float32{0, -0.79619396, 0, 0, 0, 0, 0, 0, 0, -0.44150367, 0.34988338, 0, -0.22075184, 0, 0, 0}
	if !slices.Equal(v, want) {
		t.Errorf("the local recipe changed: %v, want %v", v, want)
	}
}

func TestLocalEmbedIsABody(t *testing.T) {
	l := NewLocal(64)
	texts := []string{"Go developer with PostgreSQL", "watercolour illustrator"}
	got, err := l.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	want := embedDocs(t, l, Doc{Body: texts[0]}, Doc{Body: texts[1]})
	for i := range texts {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("text %d: Embed differs from EmbedDocs of the body", i)
		}
	}
	if got, err := l.Embed(context.Background(), nil); err != nil || len(got) != 0 {
		t.Errorf("no texts: %v, %v", got, err)
	}
}

func TestLocalRefusesEmptyDocuments(t *testing.T) {
	l := NewLocal(64)
	for _, d := range []Doc{{}, {Body: "   \n\t"}, {Title: "the and of", Body: "!!! -- ..."}, {Skills: []string{" ", ""}}} {
		_, err := l.EmbedDocs(context.Background(), []Doc{goJob, d})
		if !errors.Is(err, ErrEmptyText) || !strings.Contains(err.Error(), "document 1") {
			t.Errorf("%+v: %v, want ErrEmptyText naming document 1", d, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.EmbedDocs(ctx, []Doc{goJob}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: %v", err)
	}
}

func TestTokens(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"C++ and C# developer, Node.js/.NET", "c++ c# developer node.js .net"},
		{"Companies' APIs; the developers.", "company apis developer"},
		{"Kubernetes, Postgres & AWS", "kubernete postgre aws"},
		{"ＧＯ　ｄｅｖ", "go dev"}, // NFKC folds full-width forms
		{"e-commerce front_end", "e commerce front end"},
		{"v1.2.3 end. Next", "v1.2.3 end next"},
		{"+++ ### ...", ""},
		{"Über straße", "über straße"},
		{"k8s analysis classes", "k8s analysis class"},
	} {
		got := strings.Join(tokens(c.in, nil), " ")
		if got != c.want {
			t.Errorf("tokens(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSpaceAndDocText(t *testing.T) {
	if got := NewLocal(512).Space().ID(); got != "local/fhash/512/v1" {
		t.Errorf("local space %q", got)
	}
	s := Space{Provider: "ollama", Model: "nomic-ai/nomic-embed-text", Dims: 768, Version: 2}
	if s.ID() != "ollama/nomic-ai/nomic-embed-text/768/v2" || s.Validate() != nil {
		t.Errorf("%s: %v", s.ID(), s.Validate())
	}
	for _, bad := range []Space{
		{Model: "m", Dims: 1, Version: 1},
		{Provider: "a/b", Model: "m", Dims: 1, Version: 1},
		{Provider: "p", Dims: 1, Version: 1},
		{Provider: "p", Model: "m", Version: 1},
		{Provider: "p", Model: "m", Dims: 1},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	d := Doc{Title: " Go developer ", Body: "Backend work.", Skills: []string{"SQL", "go", "sql"}}
	if got, want := d.Text(), "Go developer\n\nBackend work.\n\nSkills: go, sql"; got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	if got := (Doc{Skills: []string{"go"}}).Text(); got != "Skills: go" {
		t.Errorf("skills only: %q", got)
	}
}

func FuzzLocal(f *testing.F) {
	for _, s := range []string{"", "Go developer", "c++ .net node.js", "ＧＯ", "\xff\xfe", "a.b.c. .d", "the of"} {
		f.Add(s, "go")
	}
	l := NewLocal(32)
	f.Fuzz(func(t *testing.T, text, skill string) {
		d := Doc{Title: text, Body: text, Skills: []string{skill}}
		a, errA := l.EmbedDocs(context.Background(), []Doc{d})
		b, errB := l.EmbedDocs(context.Background(), []Doc{d})
		if (errA == nil) != (errB == nil) {
			t.Fatal("not deterministic")
		}
		if errA != nil {
			if !errors.Is(errA, ErrEmptyText) {
				t.Fatalf("unexpected error %v", errA)
			}
			return
		}
		if !slices.Equal(a[0], b[0]) {
			t.Fatal("not deterministic")
		}
		if n := norm2(a[0]); math.IsNaN(n) || math.Abs(n-1) > 1e-5 {
			t.Fatalf("norm %v", n)
		}
		for _, w := range tokens(text, nil) {
			if w == "" || !utf8.ValidString(w) && utf8.ValidString(text) {
				t.Fatalf("token %q from %q", w, text)
			}
		}
	})
}

// BenchmarkLocal is the cost of one profile-sized document: re-embedding a region's 100,000
// profiles after a change of the recipe costs 100,000 times this on one core.
func BenchmarkLocal(b *testing.B) {
	l := NewLocal(LocalDims)
	d := Doc{Title: goBackend.Title, Body: strings.Repeat(goBackend.Body+" ", 8), Skills: goBackend.Skills}
	docs := []Doc{d}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.EmbedDocs(ctx, docs); err != nil {
			b.Fatal(err)
		}
	}
}
