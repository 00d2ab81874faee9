package embed

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// LocalDims is the suggested size of local vectors: large enough that the few hundred features of a
// profile rarely collide, small enough that the index's 1-bit codes are eight words.
const LocalDims = 512

// LocalVersion is the version of the local recipe (tokeniser, features, weights). Change any of
// them and bump it: the vectors are a new space.
const LocalVersion = 1

// The weights of the local recipe. A skill is the strongest evidence a document gives about what
// work it is about, a title word says more than a body word, and a bigram ("machine learning")
// refines its two words without replacing them.
const (
	titleWeight  = 2.0
	bodyWeight   = 1.0
	bigramWeight = 0.5
	skillWeight  = 2.5 // the value of a skill feature before normalisation, once per distinct skill
)

// Local is the deterministic embedder that needs no network: feature hashing of words, word bigrams
// and skills (see the package documentation). It is safe for concurrent use.
type Local struct {
	space Space
}

var _ Embedder = (*Local)(nil)

// NewLocal returns a local embedder of dims dimensions (LocalDims unless there is a reason). It
// panics when dims is not positive: that is a programming error, not a configuration one.
func NewLocal(dims int) *Local {
	if dims < 1 {
		panic(fmt.Sprintf("embed: NewLocal(%d): dims must be positive", dims))
	}
	return &Local{space: Space{Provider: "local", Model: "fhash", Dims: dims, Version: LocalVersion}}
}

// Space returns local/fhash/<dims>/v<LocalVersion>.
func (l *Local) Space() Space { return l.space }

// Embed embeds each text as the body of a document with no title and no skills.
func (l *Local) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	docs := make([]Doc, len(texts))
	for i, t := range texts {
		docs[i] = Doc{Body: t}
	}
	return l.EmbedDocs(ctx, docs)
}

// EmbedDocs embeds each document. A document with no words and no skills is refused with
// ErrEmptyText.
func (l *Local) EmbedDocs(ctx context.Context, docs []Doc) ([][]float32, error) {
	out := make([][]float32, len(docs))
	f := newFeatures()
	for i, d := range docs {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		v, ok := l.vector(d, f)
		if !ok {
			return nil, fmt.Errorf("embed: document %d: %w", i, ErrEmptyText)
		}
		out[i] = v
	}
	return out, nil
}

// vector makes the unit vector of d, reusing f's storage; false when d has no features.
func (l *Local) vector(d Doc, f *features) ([]float32, bool) {
	f.reset()
	f.text(d.Title, titleWeight)
	f.text(d.Body, bodyWeight)
	for _, s := range sortedSkills(d.Skills) {
		f.set("s"+s, skillWeight) // sortedSkills dropped repeats: a skill counts once
		// The skill's words count as words too, so that a body that says "kubernetes" meets a
		// profile whose skill is "kubernetes", and "react native" meets "react".
		f.text(s, bodyWeight)
	}
	dims := uint64(l.space.Dims)
	acc := make([]float64, l.space.Dims)
	// The features are added in the order they were first seen, so the sums, and their rounding,
	// are the same on every run.
	for _, ft := range f.list {
		value := ft.value
		if !ft.fixed {
			// Sublinear term frequency: the tenth "go" in a profile says little more than the third.
			value = math.Log1p(value)
		}
		h := hash(ft.key)
		i := (h >> 1) % dims
		if h&1 == 1 {
			value = -value
		}
		acc[i] += value
	}
	var sum float64
	for _, x := range acc {
		sum += x * x
	}
	if sum == 0 {
		return nil, false
	}
	inv := 1 / math.Sqrt(sum)
	v := make([]float32, len(acc))
	for i, x := range acc {
		v[i] = float32(x * inv)
	}
	return v, true
}

// hash is FNV-1a finished with splitmix64's mixer, whose every output bit depends on every input
// bit (FNV's low bits alone are weak, and the sign comes from bit 0).
func hash(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// features accumulates one document's features in the order they are first seen: words
// ("w"+word) and bigrams ("b"+word+" "+word) with their weighted counts, and skills ("s"+skill) whose
// value is set, not counted.
type features struct {
	pos   map[string]int
	list  []feature
	words []string
}

type feature struct {
	key   string
	value float64
	fixed bool
}

func newFeatures() *features { return &features{pos: map[string]int{}} }

func (f *features) reset() {
	clear(f.pos)
	f.list = f.list[:0]
}

func (f *features) add(key string, weight float64) {
	if i, ok := f.pos[key]; ok {
		f.list[i].value += weight
		return
	}
	f.pos[key] = len(f.list)
	f.list = append(f.list, feature{key: key, value: weight})
}

func (f *features) set(key string, value float64) {
	if i, ok := f.pos[key]; ok {
		f.list[i] = feature{key: key, value: value, fixed: true}
		return
	}
	f.pos[key] = len(f.list)
	f.list = append(f.list, feature{key: key, value: value, fixed: true})
}

// text adds the words and bigrams of s, each occurrence counting weight.
func (f *features) text(s string, weight float64) {
	f.words = tokens(s, f.words[:0])
	for i, w := range f.words {
		f.add("w"+w, weight)
		if i > 0 {
			f.add("b"+f.words[i-1]+" "+w, weight*bigramWeight)
		}
	}
}

// tokens appends the normalised words of s to dst: NFKC, lower case, split on anything that is not
// a letter, a digit, '+' or '#' (so "c++" and "c#" survive), with a '.' kept inside or at the start of
// a word followed by a letter or digit ("node.js", ".net"), stop words dropped and a plural 's'
// removed.
func tokens(s string, dst []string) []string {
	s = norm.NFKC.String(s)
	var cur strings.Builder
	flush := func() {
		w := cur.String()
		cur.Reset()
		if w == "" || !hasAlnum(w) {
			return
		}
		if _, stop := stopWords[w]; stop {
			return
		}
		dst = append(dst, stem(w))
	}
	for i, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) && cur.Len() > 0:
			cur.WriteRune(unicode.ToLower(r))
		case r == '+' || r == '#':
			cur.WriteRune(r)
		case r == '.':
			next, _ := utf8.DecodeRuneInString(s[i+1:])
			if unicode.IsLetter(next) || unicode.IsDigit(next) {
				cur.WriteRune(r)
			} else {
				flush()
			}
		default:
			flush()
		}
	}
	flush()
	return dst
}

func hasAlnum(w string) bool {
	for _, r := range w {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return true
		}
	}
	return false
}

// stem folds the commonest English plurals ("companies", "classes", "developers") onto the singular.
// Both sides of every comparison go through it, so a wrong cut ("kubernetes" to "kubernete") is
// harmless; a missed one costs a little similarity.
func stem(w string) string {
	if strings.ContainsAny(w, ".+#0123456789") {
		return w // a name ("node.js", "k8s"), not an English word
	}
	n := len(w)
	switch {
	case n > 4 && strings.HasSuffix(w, "sses"):
		return w[:n-2]
	case n > 4 && strings.HasSuffix(w, "ies"):
		return w[:n-3] + "y"
	case n > 3 && w[n-1] == 's' && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "is"):
		return w[:n-1]
	}
	return w
}

// stopWords are English function words and the words nearly every posting and profile uses
// ("experience", "looking", "project"): without a corpus to weigh words by rarity, leaving them in
// would make every pair of documents look alike.
var stopWords = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, w := range strings.Fields(`
		a about above after again all also am an and any are as at be been before being below between
		both but by can could did do does doing down during each either else etc every few for from
		further had has have having he her here hers him his how i if in into is it its itself just
		me more most my no nor not of off on once only or other our ours out over own per same she
		should so some such than that the their theirs them then there these they this those through
		to too under until up very via was we were what when where which while who whom why will with
		within without would you your yours
		able ability etc experience experienced expert good great help hire hiring job looking need
		needed new plus project projects required requirement requirements skill skills strong team
		work working year years`) {
		m[w] = struct{}{}
	}
	return m
}()
