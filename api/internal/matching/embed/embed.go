package embed

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Errors an Embedder or a Budget returns, always wrapped with the detail (and an "embed:" prefix);
// test them with errors.Is.
var (
	// ErrEmptyText: a text or document has nothing to embed (no words once normalised, or only white
	// space). No vector is made for it; the caller stores none. The error names the input's index.
	ErrEmptyText = errors.New("nothing to embed")
	// ErrBudgetExhausted: the region's daily token budget would be exceeded; no request was sent.
	// Try again after 00:00 UTC, or embed locally in the meantime (in another space).
	ErrBudgetExhausted = errors.New("daily embedding budget exhausted")
	// ErrUnavailable: the provider could not be reached or kept failing (retries spent, circuit
	// open, a timeout), or the budget could not be checked. Try later: nothing about the input was
	// wrong. When the circuit is open the error also wraps breaker.ErrOpen.
	ErrUnavailable = errors.New("embedding unavailable, try later")
	// ErrRejected: the provider refused the request itself (a 4xx other than 408, 409 and 429: a bad
	// key, a model it does not serve, an input too long) or answered with vectors that do not fit
	// the space. The same request will fail again; it needs a change of config or input.
	ErrRejected = errors.New("embedding request cannot succeed as it is")
)

// Space names the vector space an embedding belongs to. Vectors of different spaces are never
// compared: a change of provider, model, dimensions or the embedding recipe (Version) is a new
// space, and every stored vector is re-embedded into it.
type Space struct {
	Provider string // "local", "openai", or the name of an OpenAI-compatible server
	Model    string // the provider's model name, as sent to it
	Dims     int    // the length of every vector
	Version  int    // bumped when the way texts are built or vectors made changes for the same model
}

// ID returns "provider/model/dims/vVersion", the space's stable key (the model column of
// ai.embeddings). A model name may itself hold slashes ("nomic-ai/nomic-embed-text"); the ID stays
// unique because the provider has none and the last two parts are always dims and version.
func (s Space) ID() string {
	return s.Provider + "/" + s.Model + "/" + strconv.Itoa(s.Dims) + "/v" + strconv.Itoa(s.Version)
}

// String is the ID.
func (s Space) String() string { return s.ID() }

// Validate reports the first field that cannot make a stable, unique ID.
func (s Space) Validate() error {
	switch {
	case s.Provider == "" || strings.ContainsAny(s.Provider, "/ "):
		return fmt.Errorf("embed: space Provider %q must be non-empty, without slashes or spaces", s.Provider)
	case strings.TrimSpace(s.Model) == "":
		return errors.New("embed: space Model is required")
	case s.Dims < 1:
		return fmt.Errorf("embed: space Dims must be positive, not %d", s.Dims)
	case s.Version < 1:
		return fmt.Errorf("embed: space Version must be at least 1, not %d", s.Version)
	}
	return nil
}

// Doc is a job posting or a freelancer profile as the embedders see it. Skills are the normalised
// skill names (api/internal/skills.Normalize); their order does not matter.
type Doc struct {
	Title  string
	Body   string
	Skills []string
}

// Text is the document as one text, for a model that takes plain text: the title, the body, then
// the skills on a line of their own. Skills are sorted, so that reordering them changes nothing.
func (d Doc) Text() string {
	var b strings.Builder
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(s)
	}
	add(d.Title)
	add(d.Body)
	if sk := sortedSkills(d.Skills); len(sk) > 0 {
		add("Skills: " + strings.Join(sk, ", "))
	}
	return b.String()
}

// Embedder turns texts into unit vectors of one space.
type Embedder interface {
	// Space is the space of every vector this embedder returns.
	Space() Space
	// Embed returns one L2-normalised vector of Space().Dims per text, in order. It fails as a
	// whole: no vectors come back with an error.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// EmbedDocs is Embed for documents, letting the embedder weigh titles and skills.
	EmbedDocs(ctx context.Context, docs []Doc) ([][]float32, error)
}

// foldSkill is the canonical form of a skill, as api/internal/skills.Fold makes it: callers pass
// normalised skills, and folding again makes a stray "Go " harmless.
func foldSkill(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// sortedSkills returns the distinct folded skills, sorted.
func sortedSkills(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]struct{}, len(in))
	for _, s := range in {
		s = foldSkill(s)
		if _, dup := seen[s]; s == "" || dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
