// Package embed turns job postings and freelancer profiles into unit vectors for matching. Two
// embedders implement one interface: OpenAI (or any server that speaks OpenAI's embeddings API),
// used when a key is configured, and Local, which needs no network and is used otherwise, so that
// matching works offline and in tests. Every vector is a []float32 of unit length, so cosine
// similarity is a dot product.
//
// # Spaces
//
// A vector means something only next to vectors of the same model, dimensions and recipe, so every
// vector belongs to a Space, whose ID ("openai/text-embedding-3-small/1536/v1",
// "local/fhash/512/v1") is stored beside it. The version is part of the ID because the recipe can
// change while the model does not: a different Doc.Text layout, a new tokeniser for Local. Whoever
// changes either bumps the version, and the stored vectors, now of an old space, are re-embedded
// rather than compared with new ones. The provider is part of it because an OpenAI-compatible
// server may serve a model under OpenAI's name without making OpenAI's vectors.
//
// # The local embedder: feature hashing
//
// Local needs no model, no vocabulary and no corpus statistics, and gives the same vector for the
// same document on every machine and every run (the hash is FNV-1a, fixed by its specification,
// finished with splitmix64's mixer, and features are summed in the order the text gives them), so
// it can be recomputed anywhere and tested exactly.
// Feature hashing maps an unbounded vocabulary into a fixed number of dimensions with no table to
// ship or grow: each feature is hashed to a dimension and a sign, and added there. The sign
// (Weinberger et al., 2009) makes collisions cancel in expectation instead of inflating every
// similarity, so the dot product of two hashed vectors is an unbiased estimate of the dot product of
// their feature vectors.
//
// The features are the normalised words of the title (weight 2) and body (weight 1), word bigrams
// at half their words' weight ("machine learning" is more than "machine" and "learning"), and
// skills, each one a feature of its own with a fixed weight of 2.5 (a shared skill is the best
// evidence two documents are about the same work) whose words also count as body words (a body
// that says "kubernetes" meets a profile with the skill). Words are NFKC-folded and lower-cased,
// split so that "c++", "c#", "node.js" and ".net" survive, stripped of English stop words and of
// the words every posting uses ("experience", "project"), which without corpus statistics would
// otherwise make every pair alike, and folded from the commonest plurals. Counts are sublinear
// (log(1+tf)): a word said ten times is not ten times the evidence. The result is L2-normalised.
// It is a bag of words, not a language model: it knows "golang" and "go" only if both are written,
// which is what OpenAI's embeddings are for.
//
// # The OpenAI embedder: batches, retries, the breaker and the budget
//
// Texts go in batches of OpenAIConfig.BatchSize, one request each, one after another (the node has
// two cores and the provider a rate limit; parallel batches would only reach the limit sooner).
// Every request has its own timeout. A request that times out, cannot connect, or is answered
// 408, 409, 429 or 5xx is retried up to MaxRetries times, after BaseBackoff doubled at each retry,
// capped at MaxBackoff and drawn at random from the upper half of that (so that nodes that failed
// together do not retry together), or after the server's Retry-After (or OpenAI's retry-after-ms)
// when it asks for longer; when it asks for more than MaxBackoff the call gives up at once with
// ErrUnavailable, since waiting that long belongs to the caller's queue, not to a request. Any
// other 4xx is the request's fault and is never retried (ErrRejected), nor is an answer that does
// not fit the space (wrong count or length of vectors).
//
// Each request, retries included, goes through the shared circuit breaker (internal/breaker), so
// a provider that is down is given up on after a few failures by every caller at once, and a call
// that finds the circuit open fails at once with ErrUnavailable wrapping breaker.ErrOpen. A refused
// request (ErrRejected) counts as a success to the breaker: the server is up and answering, and a
// bad input must not cut every other caller off.
//
// Before anything is sent, the whole call's tokens are reserved from a Budget, estimated as
// len(text)/4+1 per text (texts are cut at 16 KB first). RedisBudget keeps one count per region
// and UTC day in the region's Redis, checked and increased in one script so that nodes cannot
// overspend together. The estimate is reserved once per call, not once per attempt, and not given
// back when a call fails: a failed request may still have been billed, and the budget is a bound,
// not an invoice. When Redis cannot be reached the budget cannot be checked, and the call fails
// with ErrUnavailable rather than spend without a bound.
//
// A call fails as a whole: it returns all its vectors or none, and its error says what to do with
// errors.Is: ErrEmptyText (fix the input), ErrRejected (fix the config or input), ErrBudgetExhausted
// (wait for tomorrow) or ErrUnavailable (try later).
package embed
