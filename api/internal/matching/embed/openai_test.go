package embed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/8thdegree/meridian/internal/breaker"
)

// fakeAPI is a server that speaks OpenAI's POST /v1/embeddings. Its vectors are the local embedder's
// of each input, scaled by 3 (so the client's normalisation shows), in the requested dimensions or
// its own. Queued faults answer the next requests, one each, before it answers well again.
type fakeAPI struct {
	t    *testing.T
	srv  *httptest.Server
	dims int // when the request asks for none

	mu       sync.Mutex
	faults   []fault
	requests []fakeRequest
	// mutate, when set, edits a good response before it is sent (to break it).
	mutate func(resp map[string]any)
}

type fault struct {
	status int
	header map[string]string
	body   string
	hang   bool // never answers; the client must time out
}

type fakeRequest struct {
	Auth       string
	Path       string
	Model      string
	Input      []string
	Dimensions *int
}

func newFakeAPI(t *testing.T, dims int) *fakeAPI {
	f := &fakeAPI{t: t, dims: dims}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) url() string { return f.srv.URL + "/v1" }

func (f *fakeAPI) fail(fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fs...)
}

func (f *fakeAPI) got() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Input      []string `json:"input"`
		Model      string   `json:"model"`
		Dimensions *int     `json:"dimensions"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{Auth: r.Header.Get("Authorization"), Path: r.URL.Path, Model: body.Model, Input: body.Input, Dimensions: body.Dimensions})
	var ft *fault
	if len(f.faults) > 0 {
		ft = &f.faults[0]
		f.faults = f.faults[1:]
	}
	mutate := f.mutate
	f.mu.Unlock()

	if ft != nil {
		if ft.hang {
			<-r.Context().Done()
			return
		}
		for k, v := range ft.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ft.status)
		msg := ft.body
		if msg == "" {
			msg = fmt.Sprintf(`{"error":{"message":"fault %d","type":"server_error"}}`, ft.status)
		}
		_, _ = w.Write([]byte(msg))
		return
	}
	dims := f.dims
	if body.Dimensions != nil {
		dims = *body.Dimensions
	}
	vecs, err := NewLocal(dims).Embed(r.Context(), body.Input)
	if err != nil {
		f.t.Errorf("fake API: %v", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	data := make([]map[string]any, len(vecs))
	for i, v := range vecs {
		scaled := make([]float32, len(v))
		for j, x := range v {
			scaled[j] = 3 * x
		}
		// In reverse order: the client must place vectors by index, not by position.
		data[len(vecs)-1-i] = map[string]any{"object": "embedding", "index": i, "embedding": scaled}
	}
	resp := map[string]any{"object": "list", "model": body.Model, "data": data,
		"usage": map[string]int{"prompt_tokens": 1, "total_tokens": 1}}
	if mutate != nil {
		mutate(resp)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// unlimited is a budget that counts what it is asked for and refuses nothing.
type unlimited struct {
	mu     sync.Mutex
	tokens int
	calls  int
}

func (u *unlimited) Reserve(_ context.Context, tokens int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tokens += tokens
	u.calls++
	return nil
}

func testConfig(f *fakeAPI) OpenAIConfig {
	cfg := DefaultOpenAIConfig()
	cfg.BaseURL = f.url()
	cfg.APIKey = "sk-test"
	cfg.Dims = 64
	cfg.BatchSize = 4
	cfg.Timeout = 2 * time.Second
	cfg.MaxRetries = 3
	cfg.BaseBackoff = time.Millisecond
	cfg.MaxBackoff = 20 * time.Millisecond
	return cfg
}

func testBreaker(t *testing.T, failures uint32, openFor time.Duration) *breaker.Breaker {
	t.Helper()
	cfg := breaker.DefaultConfig("openai")
	cfg.Failures = failures
	cfg.OpenFor = openFor
	b, err := breaker.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestOpenAI(t *testing.T, cfg OpenAIConfig, br *breaker.Breaker, budget Budget) *OpenAI {
	t.Helper()
	if br == nil {
		br = testBreaker(t, 5, time.Hour)
	}
	if budget == nil {
		budget = &unlimited{}
	}
	o, err := NewOpenAI(cfg, br, budget)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("freelancer %d writes go and sql, text number %d", i, i)
	}
	return out
}

func TestOpenAIBatchesInOrder(t *testing.T) {
	f := newFakeAPI(t, 0)
	budget := &unlimited{}
	o := newTestOpenAI(t, testConfig(f), nil, budget)
	if got := o.Space().ID(); got != "openai/text-embedding-3-small/64/v1" {
		t.Errorf("space %q", got)
	}
	in := texts(10)
	vs, err := o.Embed(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.got()
	var sizes []int
	for _, r := range reqs {
		sizes = append(sizes, len(r.Input))
		if r.Auth != "Bearer sk-test" || r.Path != "/v1/embeddings" || r.Model != "text-embedding-3-small" ||
			r.Dimensions == nil || *r.Dimensions != 64 {
			t.Errorf("request %+v", r)
		}
	}
	if !slices.Equal(sizes, []int{4, 4, 2}) {
		t.Errorf("batch sizes %v, want [4 4 2]", sizes)
	}
	want, _ := NewLocal(64).Embed(context.Background(), in)
	for i := range in {
		if d := dot(vs[i], want[i]); d < 0.99999 {
			t.Errorf("text %d: vector off by cosine %v (order or normalisation)", i, d)
		}
		if n := norm2(vs[i]); n < 0.99999 || n > 1.00001 {
			t.Errorf("text %d: norm %v", i, n)
		}
	}
	wantTokens := 0
	for _, s := range in {
		wantTokens += EstimateTokens(s)
	}
	if budget.calls != 1 || budget.tokens != wantTokens {
		t.Errorf("budget asked %d times for %d tokens, want once for %d", budget.calls, budget.tokens, wantTokens)
	}
	if s := o.Stats(); s.Calls != 1 || s.Requests != 3 || s.Retries != 0 || s.Texts != 10 || s.Tokens != int64(wantTokens) || s.Failures != 0 {
		t.Errorf("stats %+v", s)
	}

	// EmbedDocs sends each document's Text.
	if _, err := o.EmbedDocs(context.Background(), []Doc{goJob}); err != nil {
		t.Fatal(err)
	}
	if last := f.got()[len(f.got())-1]; !slices.Equal(last.Input, []string{goJob.Text()}) {
		t.Errorf("EmbedDocs sent %q", last.Input)
	}
	// Nothing to embed, nothing sent.
	n := len(f.got())
	if vs, err := o.Embed(context.Background(), nil); err != nil || len(vs) != 0 || len(f.got()) != n {
		t.Errorf("no texts: %v, %v, %d requests", vs, err, len(f.got())-n)
	}
}

// With Dims zero the model's own length is the space's and no "dimensions" is sent: older models
// (text-embedding-ada-002) and many compatible servers refuse the parameter.
func TestOpenAIDimsLeftToTheModel(t *testing.T) {
	f := newFakeAPI(t, 1536)
	cfg := testConfig(f)
	cfg.Model, cfg.Dims = "text-embedding-ada-002", 0
	o := newTestOpenAI(t, cfg, nil, nil)
	if o.Space().Dims != 1536 {
		t.Fatalf("space %s", o.Space())
	}
	vs, err := o.Embed(context.Background(), []string{"hello world"})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs[0]) != 1536 {
		t.Errorf("vector of %d", len(vs[0]))
	}
	if r := f.got()[0]; r.Dimensions != nil {
		t.Errorf("dimensions %d sent", *r.Dimensions)
	}
}

func TestOpenAIRetries(t *testing.T) {
	for _, c := range []struct {
		name     string
		faults   []fault
		retries  int
		wantErr  error // nil: success
		requests int
	}{
		{"500 then 429 then success", []fault{{status: 500}, {status: 429}}, 3, nil, 3},
		{"502 503 504 then success", []fault{{status: 502}, {status: 503, body: "<html>gateway</html>"}, {status: 504}}, 3, nil, 4},
		{"a timeout then success", []fault{{hang: true}}, 3, nil, 2},
		{"408 and 409 then success", []fault{{status: 408}, {status: 409}}, 3, nil, 3},
		{"retries spent", []fault{{status: 500}, {status: 500}, {status: 500}}, 2, ErrUnavailable, 3},
		{"no retries configured", []fault{{status: 500}}, 0, ErrUnavailable, 1},
		{"400 is not retried", []fault{{status: 400, body: `{"error":{"message":"input too long","type":"invalid_request_error"}}`}}, 3, ErrRejected, 1},
		{"401 is not retried", []fault{{status: 401}}, 3, ErrRejected, 1},
		{"404 without a JSON body is not retried", []fault{{status: 404, body: "not found"}}, 3, ErrRejected, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeAPI(t, 0)
			f.fail(c.faults...)
			cfg := testConfig(f)
			cfg.MaxRetries = c.retries
			cfg.Timeout = 200 * time.Millisecond
			o := newTestOpenAI(t, cfg, nil, nil)
			vs, err := o.Embed(context.Background(), []string{"go developer"})
			if n := len(f.got()); n != c.requests {
				t.Errorf("%d requests, want %d", n, c.requests)
			}
			if s := o.Stats(); s.Requests != int64(c.requests) || s.Retries != int64(c.requests-1) {
				t.Errorf("stats %+v", s)
			}
			if c.wantErr == nil {
				if err != nil || len(vs) != 1 {
					t.Fatalf("Embed = %v, %v", vs, err)
				}
				return
			}
			if !errors.Is(err, c.wantErr) || vs != nil {
				t.Fatalf("Embed = %v, %v; want %v", vs, err, c.wantErr)
			}
			if errors.Is(c.wantErr, ErrRejected) && errors.Is(err, ErrUnavailable) {
				t.Errorf("a rejection also says unavailable: %v", err)
			}
		})
	}
}

func TestOpenAIRetryAfter(t *testing.T) {
	f := newFakeAPI(t, 0)
	cfg := testConfig(f)
	cfg.MaxBackoff = 2 * time.Second
	o := newTestOpenAI(t, cfg, nil, nil)

	// OpenAI's retry-after-ms is honoured though the backoff alone would be a millisecond.
	f.fail(fault{status: 429, header: map[string]string{"Retry-After-Ms": "150"}})
	start := time.Now()
	if _, err := o.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("retried after %s, the server asked for 150ms", d)
	}
	// So is Retry-After in seconds.
	f.fail(fault{status: 503, header: map[string]string{"Retry-After": "1"}})
	start = time.Now()
	if _, err := o.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %s, the server asked for 1s", d)
	}
	// A wait longer than MaxBackoff is the caller's to make: no retry, unavailable.
	n := len(f.got())
	f.fail(fault{status: 429, header: map[string]string{"Retry-After": "60"}})
	start = time.Now()
	_, err := o.Embed(context.Background(), []string{"x"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "1m0s") {
		t.Errorf("Retry-After 60: %v", err)
	}
	if len(f.got())-n != 1 || time.Since(start) > time.Second {
		t.Errorf("Retry-After 60: %d requests in %s, want one at once", len(f.got())-n, time.Since(start))
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		h    map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{map[string]string{"Retry-After": "-3"}, 0},
		{map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{map[string]string{"Retry-After": now.Add(-time.Hour).Format(http.TimeFormat)}, 0},
		{map[string]string{"Retry-After": "soon"}, 0},
		{map[string]string{"Retry-After-Ms": "250.5", "Retry-After": "9"}, 250500 * time.Microsecond},
		{map[string]string{"Retry-After-Ms": "x", "Retry-After": "9"}, 9 * time.Second},
	} {
		h := http.Header{}
		for k, v := range c.h {
			h.Set(k, v)
		}
		if got := retryAfter(h, now); got != c.want {
			t.Errorf("%v: %s, want %s", c.h, got, c.want)
		}
	}
}

func TestOpenAIBackoffGrowsWithJitter(t *testing.T) {
	cfg := testConfig(newFakeAPI(t, 0))
	cfg.BaseBackoff, cfg.MaxBackoff = 100*time.Millisecond, 500*time.Millisecond
	o := newTestOpenAI(t, cfg, nil, nil)
	for attempt, want := range []time.Duration{100, 200, 400, 500, 500} {
		want *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 50 {
			d := o.backoff(attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("attempt %d: only %d distinct waits in 50: no jitter", attempt, len(seen))
		}
	}
}

// The breaker counts every request, so a provider that keeps failing is cut off mid-call, and later
// calls fail at once without a request; after OpenFor a probe lets the provider back in.
func TestOpenAIBreaker(t *testing.T) {
	f := newFakeAPI(t, 0)
	cfg := testConfig(f)
	cfg.MaxRetries = 1
	br := testBreaker(t, 3, 100*time.Millisecond)
	o := newTestOpenAI(t, cfg, br, nil)
	ctx := context.Background()
	f.fail(fault{status: 500}, fault{status: 500}, fault{status: 500}, fault{status: 500})

	// Call 1: two failed requests. Call 2: the third failure opens the circuit, and its retry is
	// refused without being sent.
	for i := range 2 {
		if _, err := o.Embed(ctx, []string{"x"}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if br.State() != breaker.Open || len(f.got()) != 3 {
		t.Fatalf("breaker %s after %d requests, want open after 3", br.State(), len(f.got()))
	}
	_, err := o.Embed(ctx, []string{"x"})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("open circuit: %v, want ErrUnavailable and breaker.ErrOpen", err)
	}
	if len(f.got()) != 3 {
		t.Fatalf("a request was sent through the open circuit")
	}
	if s := o.Stats(); s.BreakerRefusals != 2 || s.Failures != 3 {
		t.Errorf("stats %+v", s)
	}

	// The provider recovers (one fault is left, for the probe): the failed probe reopens the
	// circuit, the next one closes it.
	time.Sleep(120 * time.Millisecond)
	if _, err := o.Embed(ctx, []string{"x"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("failed probe: %v", err)
	}
	time.Sleep(120 * time.Millisecond)
	if _, err := o.Embed(ctx, []string{"x"}); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if br.State() != breaker.Closed {
		t.Errorf("breaker %s after a good probe", br.State())
	}
}

// Refusals of the request (4xx) say the server is up: they never open the circuit that every other
// caller shares.
func TestOpenAIRejectionsDoNotTripTheBreaker(t *testing.T) {
	f := newFakeAPI(t, 0)
	br := testBreaker(t, 2, time.Hour)
	o := newTestOpenAI(t, testConfig(f), br, nil)
	for range 5 {
		f.fail(fault{status: 400})
		if _, err := o.Embed(context.Background(), []string{"x"}); !errors.Is(err, ErrRejected) {
			t.Fatal(err)
		}
	}
	if br.State() != breaker.Closed {
		t.Errorf("breaker %s after rejections", br.State())
	}
}

// An answer that does not fit the request or the space is refused, not retried, and not stored.
func TestOpenAIBadAnswers(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(resp map[string]any)
	}{
		{"wrong length", func(r map[string]any) {
			d := r["data"].([]map[string]any)
			d[0]["embedding"] = make([]float32, 63)
		}},
		{"a vector missing", func(r map[string]any) { r["data"] = r["data"].([]map[string]any)[1:] }},
		{"a repeated index", func(r map[string]any) {
			d := r["data"].([]map[string]any)
			d[1]["index"] = d[0]["index"]
		}},
		{"an index out of range", func(r map[string]any) { r["data"].([]map[string]any)[0]["index"] = 7 }},
		{"a zero vector", func(r map[string]any) { r["data"].([]map[string]any)[0]["embedding"] = make([]float32, 64) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeAPI(t, 0)
			f.mutate = c.mutate
			o := newTestOpenAI(t, testConfig(f), nil, nil)
			vs, err := o.Embed(context.Background(), []string{"a b", "c d"})
			if !errors.Is(err, ErrRejected) || vs != nil {
				t.Fatalf("Embed = %v, %v; want ErrRejected", vs, err)
			}
			if n := len(f.got()); n != 1 {
				t.Errorf("%d requests, want 1 (no retry)", n)
			}
		})
	}
}

func TestOpenAIInputs(t *testing.T) {
	f := newFakeAPI(t, 0)
	budget := &unlimited{}
	o := newTestOpenAI(t, testConfig(f), nil, budget)
	// An empty text is refused before anything is reserved or sent.
	_, err := o.Embed(context.Background(), []string{"go", " \n "})
	if !errors.Is(err, ErrEmptyText) || !strings.Contains(err.Error(), "text 1") {
		t.Errorf("empty text: %v", err)
	}
	if len(f.got()) != 0 || budget.calls != 0 {
		t.Errorf("an empty text cost %d requests and %d reservations", len(f.got()), budget.calls)
	}
	// A long text is cut at a character boundary; what is reserved is what is sent.
	long := strings.Repeat("développeur ", 3000) // 12 or 13 bytes a word, over 16 KB
	if _, err := o.Embed(context.Background(), []string{long}); err != nil {
		t.Fatal(err)
	}
	sent := f.got()[0].Input[0]
	if len(sent) > maxInputBytes || len(sent) < maxInputBytes-4 || !utf8.ValidString(sent) || !strings.HasPrefix(long, sent) {
		t.Errorf("sent %d bytes (valid UTF-8 %v), want a prefix of at most %d", len(sent), utf8.ValidString(sent), maxInputBytes)
	}
	if budget.tokens != EstimateTokens(sent) {
		t.Errorf("reserved %d tokens for %d bytes sent", budget.tokens, len(sent))
	}
}

// The caller's cancellation ends a call during its backoff and does not count against the provider.
func TestOpenAICancelDuringBackoff(t *testing.T) {
	f := newFakeAPI(t, 0)
	cfg := testConfig(f)
	cfg.BaseBackoff, cfg.MaxBackoff = 10*time.Second, 10*time.Second
	o := newTestOpenAI(t, cfg, nil, nil)
	f.fail(fault{status: 429})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := o.Embed(ctx, []string{"x"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("Embed = %v after %s, want the ctx's deadline at once", err, time.Since(start))
	}

	// A caller that gives up mid-request is no news about the provider.
	br := testBreaker(t, 1, time.Hour)
	o = newTestOpenAI(t, testConfig(f), br, nil)
	f.fail(fault{hang: true})
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := o.Embed(ctx, []string{"x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled mid-request: %v", err)
	}
	if br.State() != breaker.Closed {
		t.Errorf("the caller's cancellation opened the circuit")
	}
}

func TestOpenAIConfigValidate(t *testing.T) {
	good := DefaultOpenAIConfig()
	good.APIKey = "k"
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults with a key: %v", err)
	}
	for _, c := range []struct {
		field string
		edit  func(*OpenAIConfig)
	}{
		{"BaseURL", func(c *OpenAIConfig) { c.BaseURL = "" }},
		{"BaseURL", func(c *OpenAIConfig) { c.BaseURL = "ftp://x/v1" }},
		{"BaseURL", func(c *OpenAIConfig) { c.BaseURL = "localhost:8080" }},
		{"APIKey", func(c *OpenAIConfig) { c.APIKey = "" }},
		{"Model", func(c *OpenAIConfig) { c.Model = " " }},
		{"Dims", func(c *OpenAIConfig) { c.Dims = -1 }},
		{"Dims", func(c *OpenAIConfig) { c.Model, c.Dims = "nomic-embed-text", 0 }},
		{"BatchSize", func(c *OpenAIConfig) { c.BatchSize = 0 }},
		{"BatchSize", func(c *OpenAIConfig) { c.BatchSize = 2049 }},
		{"Timeout", func(c *OpenAIConfig) { c.Timeout = 0 }},
		{"MaxRetries", func(c *OpenAIConfig) { c.MaxRetries = -1 }},
		{"BaseBackoff", func(c *OpenAIConfig) { c.BaseBackoff = 0 }},
		{"MaxBackoff", func(c *OpenAIConfig) { c.MaxBackoff = time.Millisecond }},
		{"Version", func(c *OpenAIConfig) { c.Version = -1 }},
		{"Provider", func(c *OpenAIConfig) { c.Provider = "my/server" }},
	} {
		cfg := good
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error naming it", c.field, err)
		}
		if _, err := NewOpenAI(cfg, testBreaker(t, 1, time.Second), &unlimited{}); err == nil {
			t.Errorf("%s: NewOpenAI accepted the config", c.field)
		}
	}
	// The fields the zero value leaves to defaults, and those it does not.
	cfg := good
	cfg.MaxBackoff, cfg.Provider, cfg.Version, cfg.MaxRetries = 0, "", 0, 0
	o := newTestOpenAI(t, cfg, nil, nil)
	if o.Space().ID() != "openai/text-embedding-3-small/1536/v1" || o.cfg.MaxBackoff != 10*time.Second || o.cfg.MaxRetries != 0 {
		t.Errorf("zero values: %s, %+v", o.Space(), o.cfg)
	}
	cfg.Provider, cfg.Version = "ollama", 3
	if got := newTestOpenAI(t, cfg, nil, nil).Space().ID(); got != "ollama/text-embedding-3-small/1536/v3" {
		t.Errorf("space %q", got)
	}
	if _, err := NewOpenAI(good, nil, &unlimited{}); err == nil {
		t.Error("NewOpenAI without a breaker")
	}
	if _, err := NewOpenAI(good, testBreaker(t, 1, time.Second), nil); err == nil {
		t.Error("NewOpenAI without a budget")
	}
}
