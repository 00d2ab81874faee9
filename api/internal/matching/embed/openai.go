package embed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"

	"github.com/8thdegree/meridian/internal/breaker"
)

// OpenAIConfig configures the OpenAI embedder. Start from DefaultOpenAIConfig.
type OpenAIConfig struct {
	// BaseURL is the API root including its version, as OpenAI's own clients take it
	// ("https://api.openai.com/v1", "http://localhost:11434/v1"); requests go to BaseURL+"/embeddings".
	BaseURL string
	// APIKey is sent as a bearer token. Required: without a key, use the local embedder.
	APIKey string
	// Model is the model name sent with every request.
	Model string
	// Dims is the length of the vectors. When set it is sent as the request's "dimensions" (models
	// from text-embedding-3 on shorten their vectors to it); zero takes the model's own length,
	// known for OpenAI's models (KnownDims) and required for any other.
	Dims int
	// BatchSize is the most texts sent in one request (OpenAI takes up to 2048).
	BatchSize int
	// Timeout bounds each request, retries included one by one.
	Timeout time.Duration
	// MaxRetries is how many times a failed request is tried again (zero: never).
	MaxRetries int
	// BaseBackoff is the wait before the first retry; it doubles for each one after, with jitter.
	BaseBackoff time.Duration
	// MaxBackoff caps the wait between retries. A server that asks for a longer wait (Retry-After)
	// gets no more retries from this call. Zero means 10s.
	MaxBackoff time.Duration
	// Provider names the server in the space ID. Zero means "openai"; name an OpenAI-compatible
	// server ("ollama", "vllm") so that its vectors are never taken for OpenAI's.
	Provider string
	// Version is the space's version: bump it when the way texts are built for this model changes.
	// Zero means 1.
	Version int
}

// KnownDims are the native lengths of OpenAI's embedding models.
var KnownDims = map[string]int{
	"text-embedding-3-small": 1536,
	"text-embedding-3-large": 3072,
	"text-embedding-ada-002": 1536,
}

// DefaultOpenAIConfig returns the defaults for OpenAI itself; set APIKey.
func DefaultOpenAIConfig() OpenAIConfig {
	return OpenAIConfig{
		BaseURL:     "https://api.openai.com/v1",
		Model:       "text-embedding-3-small",
		Dims:        1536,
		BatchSize:   64,
		Timeout:     15 * time.Second,
		MaxRetries:  3,
		BaseBackoff: 250 * time.Millisecond,
		MaxBackoff:  10 * time.Second,
		Provider:    "openai",
		Version:     1,
	}
}

// withDefaults fills the fields that zero stands in for.
func (c OpenAIConfig) withDefaults() OpenAIConfig {
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(10*time.Second, c.BaseBackoff)
	}
	if c.Provider == "" {
		c.Provider = "openai"
	}
	if c.Version == 0 {
		c.Version = 1
	}
	return c
}

// Validate reports the first bad field.
func (c OpenAIConfig) Validate() error {
	c = c.withDefaults()
	u, err := url.Parse(c.BaseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("embed: OpenAI BaseURL %q must be an http or https URL", c.BaseURL)
	case c.APIKey == "":
		return errors.New("embed: OpenAI APIKey is required (without one, use the local embedder)")
	case strings.TrimSpace(c.Model) == "":
		return errors.New("embed: OpenAI Model is required")
	case c.Dims < 0:
		return fmt.Errorf("embed: OpenAI Dims must not be negative, not %d", c.Dims)
	case c.Dims == 0 && KnownDims[c.Model] == 0:
		return fmt.Errorf("embed: OpenAI Dims is required for model %q, whose length is not known", c.Model)
	case c.BatchSize < 1 || c.BatchSize > 2048:
		return fmt.Errorf("embed: OpenAI BatchSize must be 1 to 2048, not %d", c.BatchSize)
	case c.Timeout <= 0:
		return errors.New("embed: OpenAI Timeout must be positive")
	case c.MaxRetries < 0:
		return fmt.Errorf("embed: OpenAI MaxRetries must not be negative, not %d", c.MaxRetries)
	case c.MaxRetries > 0 && c.BaseBackoff <= 0:
		return errors.New("embed: OpenAI BaseBackoff must be positive when MaxRetries is")
	case c.MaxBackoff < c.BaseBackoff:
		return errors.New("embed: OpenAI MaxBackoff must be at least BaseBackoff")
	case c.Version < 1:
		return fmt.Errorf("embed: OpenAI Version must be at least 1, not %d", c.Version)
	}
	return c.space().Validate()
}

func (c OpenAIConfig) space() Space {
	dims := c.Dims
	if dims == 0 {
		dims = KnownDims[c.Model]
	}
	return Space{Provider: c.Provider, Model: c.Model, Dims: dims, Version: c.Version}
}

// maxInputBytes bounds one text sent to the provider. OpenAI refuses inputs over 8192 tokens; 16 KB
// is about 4,000 tokens of English and stays under the limit for scripts of three bytes a character.
const maxInputBytes = 16 << 10

// OpenAI embeds through an OpenAI-compatible embeddings API. It is safe for concurrent use.
type OpenAI struct {
	cfg    OpenAIConfig
	space  Space
	client *openai.Client
	br     *breaker.Breaker
	budget Budget
	// sendDims is the "dimensions" sent: zero (left out) when the config left the length to the model.
	sendDims int

	stats struct {
		calls, requests, retries, texts, tokens, failures, budgetRefusals, breakerRefusals atomic.Int64
	}
}

var _ Embedder = (*OpenAI)(nil)

// NewOpenAI returns an embedder that calls the API cfg names through br (the process's shared
// circuit breaker for the provider) and spends from budget.
func NewOpenAI(cfg OpenAIConfig, br *breaker.Breaker, budget Budget) (*OpenAI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if br == nil {
		return nil, errors.New("embed: NewOpenAI needs a circuit breaker")
	}
	if budget == nil {
		return nil, errors.New("embed: NewOpenAI needs a budget")
	}
	cfg = cfg.withDefaults()
	cc := openai.DefaultConfig(cfg.APIKey)
	cc.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	cc.HTTPClient = hintingDoer{c: &http.Client{}}
	return &OpenAI{cfg: cfg, space: cfg.space(), client: openai.NewClientWithConfig(cc), br: br, budget: budget, sendDims: cfg.Dims}, nil
}

// Space returns the configured space.
func (o *OpenAI) Space() Space { return o.space }

// EmbedDocs embeds each document's Text.
func (o *OpenAI) EmbedDocs(ctx context.Context, docs []Doc) ([][]float32, error) {
	texts := make([]string, len(docs))
	for i, d := range docs {
		texts[i] = d.Text()
	}
	return o.Embed(ctx, texts)
}

// Embed reserves the estimated tokens of all texts from the budget, then sends them in batches of
// BatchSize, each request retried as the package documentation says. Texts over 16 KB are cut (at
// a character boundary). It fails as a whole, with ErrEmptyText, ErrBudgetExhausted, ErrUnavailable,
// ErrRejected or the ctx's error.
func (o *OpenAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return [][]float32{}, nil
	}
	o.stats.calls.Add(1)
	in := make([]string, len(texts))
	tokens := 0
	for i, t := range texts {
		t = strings.TrimSpace(t)
		if t == "" {
			o.stats.failures.Add(1)
			return nil, fmt.Errorf("embed: text %d: %w", i, ErrEmptyText)
		}
		in[i] = truncate(t, maxInputBytes)
		tokens += EstimateTokens(in[i])
	}
	if err := o.budget.Reserve(ctx, tokens); err != nil {
		o.stats.failures.Add(1)
		if errors.Is(err, ErrBudgetExhausted) {
			o.stats.budgetRefusals.Add(1)
		}
		return nil, err
	}
	o.stats.tokens.Add(int64(tokens))
	out := make([][]float32, 0, len(in))
	for start := 0; start < len(in); start += o.cfg.BatchSize {
		batch := in[start:min(start+o.cfg.BatchSize, len(in))]
		vecs, err := o.batch(ctx, batch)
		if err != nil {
			o.stats.failures.Add(1)
			return nil, fmt.Errorf("embed: %s: texts %d to %d: %w", o.space.ID(), start, start+len(batch)-1, err)
		}
		out = append(out, vecs...)
	}
	o.stats.texts.Add(int64(len(out)))
	return out, nil
}

// EstimateTokens is the budget's estimate of a text's tokens: a token is about four bytes of English.
func EstimateTokens(text string) int { return len(text)/4 + 1 }

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// batch sends one request, retrying it while the failure is worth retrying.
func (o *OpenAI) batch(ctx context.Context, texts []string) ([][]float32, error) {
	for attempt := 0; ; attempt++ {
		vecs, hint, err := o.attempt(ctx, texts)
		if err == nil {
			return vecs, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, breaker.ErrOpen) {
			o.stats.breakerRefusals.Add(1)
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if errors.Is(err, ErrRejected) {
			return nil, err
		}
		if attempt >= o.cfg.MaxRetries {
			return nil, fmt.Errorf("gave up after %d attempts (%w): %w", attempt+1, ErrUnavailable, err)
		}
		wait := o.backoff(attempt)
		if hint > o.cfg.MaxBackoff {
			return nil, fmt.Errorf("the server asks to wait %s (%w): %w", hint, ErrUnavailable, err)
		}
		wait = max(wait, hint)
		o.stats.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// backoff is the wait before retry number attempt+1: BaseBackoff doubled attempt times, capped at
// MaxBackoff, then drawn uniformly from its upper half, so that clients that failed together do not
// retry together and the wait still grows.
func (o *OpenAI) backoff(attempt int) time.Duration {
	d := float64(o.cfg.BaseBackoff) * math.Pow(2, float64(attempt))
	d = min(d, float64(o.cfg.MaxBackoff))
	return time.Duration(d/2 + rand.Float64()*d/2)
}

// attempt sends one request through the breaker. A refusal of the request itself (ErrRejected) is
// returned as the error but counted by the breaker as a success: the server is up and answering.
// hint is the wait the server asked for (Retry-After), zero when it asked none.
func (o *OpenAI) attempt(ctx context.Context, texts []string) (vecs [][]float32, hint time.Duration, err error) {
	var rejected error
	h := &retryHint{}
	err = o.br.Do(ctx, func(ctx context.Context) error {
		o.stats.requests.Add(1)
		actx, cancel := context.WithTimeout(context.WithValue(ctx, hintKey{}, h), o.cfg.Timeout)
		defer cancel()
		resp, err := o.client.CreateEmbeddings(actx, openai.EmbeddingRequestStrings{
			Input:      texts,
			Model:      openai.EmbeddingModel(o.cfg.Model),
			Dimensions: o.sendDims,
		})
		if err != nil {
			if status := statusOf(err); status != 0 && !retryableStatus(status) {
				rejected = fmt.Errorf("%w: %w", ErrRejected, err)
				return nil
			}
			if ctx.Err() == nil && actx.Err() != nil {
				return fmt.Errorf("no answer within %s: %w", o.cfg.Timeout, err)
			}
			return err
		}
		vecs, err = o.vectors(resp, len(texts))
		return err
	})
	if rejected != nil {
		return nil, 0, rejected
	}
	return vecs, h.wait, err
}

// vectors checks the response against the request and the space, and returns the vectors in the
// order of the texts, normalised (OpenAI's are already; not every compatible server's are).
func (o *OpenAI) vectors(resp openai.EmbeddingResponse, n int) ([][]float32, error) {
	if len(resp.Data) != n {
		return nil, fmt.Errorf("%w: the answer has %d vectors for %d texts", ErrRejected, len(resp.Data), n)
	}
	out := make([][]float32, n)
	for _, e := range resp.Data {
		if e.Index < 0 || e.Index >= n || out[e.Index] != nil {
			return nil, fmt.Errorf("%w: the answer has a bad or repeated index %d", ErrRejected, e.Index)
		}
		if len(e.Embedding) != o.space.Dims {
			return nil, fmt.Errorf("%w: the answer has a vector of %d dimensions, the space %d", ErrRejected, len(e.Embedding), o.space.Dims)
		}
		v, ok := normalize(e.Embedding)
		if !ok {
			return nil, fmt.Errorf("%w: the answer's vector %d is zero or not finite", ErrRejected, e.Index)
		}
		out[e.Index] = v
	}
	return out, nil
}

// normalize returns v scaled to unit length, false when that is impossible.
func normalize(v []float32) ([]float32, bool) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 || math.IsNaN(sum) || math.IsInf(sum, 0) {
		return nil, false
	}
	inv := 1 / math.Sqrt(sum)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out, true
}

// statusOf is the HTTP status of a failed request, zero when no response came back.
func statusOf(err error) int {
	var api *openai.APIError
	if errors.As(err, &api) {
		return api.HTTPStatusCode
	}
	var req *openai.RequestError
	if errors.As(err, &req) {
		return req.HTTPStatusCode
	}
	return 0
}

// retryableStatus: timeouts, conflicts, rate limits and server errors pass; the rest of 4xx is the
// request's fault and will not.
func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusConflict ||
		status == http.StatusTooManyRequests || status >= 500
}

// retryHint carries a response's Retry-After out of go-openai, which drops the headers of failures.
type retryHint struct{ wait time.Duration }

type hintKey struct{}

// hintingDoer is the HTTP client of the go-openai client: it records the wait a failed response
// asks for in the retryHint of the request's context.
type hintingDoer struct{ c *http.Client }

func (d hintingDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.c.Do(req)
	if err == nil && resp.StatusCode >= 400 {
		if h, ok := req.Context().Value(hintKey{}).(*retryHint); ok {
			h.wait = retryAfter(resp.Header, time.Now())
		}
	}
	return resp, err
}

// retryAfter reads OpenAI's retry-after-ms, then the standard Retry-After (seconds or a date).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 {
		return time.Duration(ms * float64(time.Millisecond))
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// OpenAIStats counts what an OpenAI embedder did since it was made.
type OpenAIStats struct {
	Calls           int64 // Embed and EmbedDocs calls with at least one text
	Requests        int64 // HTTP requests sent, retries included
	Retries         int64 // requests that were retries
	Texts           int64 // texts embedded
	Tokens          int64 // tokens reserved from the budget (estimated)
	Failures        int64 // calls that returned an error
	BudgetRefusals  int64 // calls refused by the budget
	BreakerRefusals int64 // requests refused by the open circuit
}

// Stats returns the counters.
func (o *OpenAI) Stats() OpenAIStats {
	s := &o.stats
	return OpenAIStats{
		Calls: s.calls.Load(), Requests: s.requests.Load(), Retries: s.retries.Load(), Texts: s.texts.Load(),
		Tokens: s.tokens.Load(), Failures: s.failures.Load(), BudgetRefusals: s.budgetRefusals.Load(),
		BreakerRefusals: s.breakerRefusals.Load(),
	}
}
