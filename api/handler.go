package api

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/8thdegree/meridian/api/internal/accounts"
	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/hiring"
	"github.com/8thdegree/meridian/api/internal/hiring/side"
	"github.com/8thdegree/meridian/api/internal/jobs"
	"github.com/8thdegree/meridian/api/internal/matching"
	"github.com/8thdegree/meridian/api/internal/middleware"
	"github.com/8thdegree/meridian/api/internal/openapi"
	"github.com/8thdegree/meridian/api/internal/outbox"
	"github.com/8thdegree/meridian/api/internal/peers"
	"github.com/8thdegree/meridian/api/internal/profiles"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/reviews"
	"github.com/8thdegree/meridian/api/internal/revocation"
	"github.com/8thdegree/meridian/api/internal/server"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/breaker"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/ratelimit/admission"
	"github.com/8thdegree/meridian/internal/tokenissue"
)

// Version is the API version reported in the OpenAPI document.
const Version = "1.0.0"

// assembly is every feature of one node: its routes (the OpenAPI route included), their schemas, and
// the API-key verifier.
type assembly struct {
	routes   []feature.Route
	schemas  map[string]any
	accounts *accounts.Service
	// revocations are the ended sessions whose access tokens the node refuses.
	revocations *revocation.Service
	spec        *openapi.Spec
	// tasks are the features' background work, run by Node.Run beside the node's own.
	tasks []feature.Task
	// outbox carries the features' messages to other owners (docs/outbox.md).
	outbox *outbox.Outbox
	// matching is the matching engine (docs/matching.md).
	matching *matching.Service
}

// featureSettings is what the feature packages take from the node: its Config, read where it is
// needed rather than copied field by field into another struct, and the parts New built.
type featureSettings struct {
	cfg      Config
	breakers *breaker.Metrics
	tokens   *tokenissue.Issuer
	limiter  *ratelimit.Limiter
	oauth    map[string]oauth.ProviderConfig
}

// assemble builds the feature packages on a and the OpenAPI document of their routes.
func assemble(a *feature.Deps, fs featureSettings) (*assembly, error) {
	var err error
	acfg := accounts.DefaultConfig()
	acfg.Tokens, acfg.EmailPepper, acfg.StateKey = fs.tokens, []byte(fs.cfg.EmailPepper), []byte(fs.cfg.StateKey)
	acfg.RefreshTTL, acfg.OAuth, acfg.RedirectBaseURL, acfg.Limiter = fs.cfg.RefreshTTL, fs.oauth, fs.cfg.PublicURL, fs.limiter
	acfg.TrustedProxies, acfg.DisableAPIKeys = fs.cfg.TrustedProxies, !fs.cfg.FeatureAPIKeys
	acfg.SessionMaxAge = fs.cfg.SessionMaxAge
	// A revoked session's access tokens are refused as long as any of them can be unexpired.
	rvk, err := revocation.New(a, revocation.DefaultConfig(fs.cfg.AccessTTL+verifierLeeway+time.Minute), accounts.FamilyLog{})
	if err != nil {
		return nil, err
	}
	acfg.Revocations = rvk
	acfg.VerifyLinkURL = fs.cfg.VerifyEmailURL
	if acfg.Mailer, err = fs.cfg.mailer(); err != nil {
		return nil, fmt.Errorf("mail: %w", err)
	}
	acfg.AccountBackoff.Free, acfg.IPBackoff.Free = fs.cfg.LoginAccountFreeFailures, fs.cfg.LoginIPFreeFailures
	acc, err := accounts.New(a, acfg)
	if err != nil {
		return nil, err
	}
	rv, err := reviews.New(a, reviews.DefaultConfig(), side.NewSides(a))
	if err != nil {
		return nil, err
	}
	ob, err := outbox.New(a, outbox.DefaultConfig())
	if err != nil {
		return nil, err
	}
	emb, err := fs.cfg.embedder(a, fs.breakers)
	if err != nil {
		return nil, fmt.Errorf("embeddings: %w", err)
	}
	mcfg := matching.DefaultConfig()
	mcfg.Rerank = fs.cfg.MatchingRerank
	mt, err := matching.New(a, mcfg, ob, emb)
	if err != nil {
		return nil, err
	}
	pf, err := profiles.New(a, rv, mt)
	if err != nil {
		return nil, err
	}
	hr, err := hiring.New(a, ob, pf, rv)
	if err != nil {
		return nil, err
	}
	jb, err := jobs.New(a, jobs.DefaultConfig(), jobs.Hooks{Closer: hr, Watcher: mt})
	if err != nil {
		return nil, err
	}
	routes := acc.Routes()
	routes = append(routes, rvk.Routes()...)
	routes = append(routes, ob.Routes()...)
	// Order matters within each package (/jobs/search before /jobs/{id}); keep each package's own order.
	routes = append(routes, pf.Routes()...)
	routes = append(routes, rv.Routes()...)
	// The engine's /jobs/matching before the jobs feature's /jobs/{id}.
	routes = append(routes, mt.Routes()...)
	routes = append(routes, jb.Routes()...)
	routes = append(routes, hr.Routes()...)
	schemas := map[string]any{}
	for _, s := range []map[string]any{accounts.Schemas(), profiles.Schemas(), reviews.Schemas(), jobs.Schemas(), hiring.Schemas(), matching.Schemas()} {
		maps.Copy(schemas, s)
	}
	spec := openapi.NewSpec()
	routes = append(routes, spec.Route())
	if err := spec.Build(openapi.Info{
		Title:       "Meridian API",
		Version:     Version,
		Description: "The 8thDegree marketplace API. Every path is also served without the /v1 segment (/api/...), with identical behaviour.",
	}, routes, schemas); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return &assembly{routes: routes, schemas: schemas, accounts: acc, revocations: rvk, spec: spec, outbox: ob, matching: mt,
		tasks: append([]feature.Task{rvk.Task(), ob.Task()}, mt.Tasks()...)}, nil
}

// authenticator verifies bearer tokens and, when enabled, API keys.
func (asm *assembly) authenticator(tokens *accesstoken.Verifier, apiKeys bool) authn.Authenticator {
	h := &authn.HeaderAuthenticator{Verifier: tokens, Revoked: asm.revocations.Revoked}
	if apiKeys {
		h.APIKeys = asm.accounts
	}
	return h
}

// middlewares returns the node-wide middleware and the per-route middleware (rate limits, which need
// the authenticated caller).
func middlewares(reg prometheus.Registerer, lim middleware.Allower, tracing *middleware.Tracing, corsOrigins []string, trusted []netip.Prefix, user, ip ratelimit.Limit) (global, route []middleware.Middleware, err error) {
	metrics, err := middleware.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	cc := middleware.DefaultCORSConfig()
	cc.AllowedOrigins = corsOrigins
	cors, err := middleware.CORS(cc)
	if err != nil {
		return nil, nil, err
	}
	rl := middleware.DefaultRateLimitConfig()
	rl.Metrics = metrics
	rl.TrustedProxies = trusted
	if user.Rate > 0 {
		rl.User = user
	}
	if ip.Rate > 0 {
		rl.IP = ip
	}
	if err := rl.Validate(); err != nil {
		return nil, nil, err
	}
	global = []middleware.Middleware{tracing.Middleware, metrics.Middleware, cors, middleware.BodyLimit(rest.MaxBodyBytes)}
	return global, []middleware.Middleware{middleware.RateLimit(lim, rl)}, nil
}

// tracerProvider exports spans over OTLP/HTTP when an endpoint is configured; otherwise it is the no-op
// provider, and tracing only propagates the incoming trace context.
func (n *Node) tracerProvider() (trace.TracerProvider, error) {
	if n.cfg.OTLPEndpoint == "" {
		return noop.NewTracerProvider(), nil
	}
	// Like OTEL_EXPORTER_OTLP_ENDPOINT, the setting is the collector's base URL; traces go to /v1/traces.
	endpoint := strings.TrimSuffix(n.cfg.OTLPEndpoint, "/")
	if u, err := url.Parse(endpoint); err == nil && u.Path == "" {
		endpoint += "/v1/traces"
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("config: MERIDIAN_OTLP_ENDPOINT: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(n.cfg.TraceSampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "meridian-api"),
			attribute.String("meridian.region", n.cfg.Region),
		)),
	)
	n.shutdownTracing = sdk.Shutdown
	return sdk, nil
}

// admitter lets the admission limiter stand where the middleware expects an Allower.
type admitter struct{ l *admission.Limiter }

var (
	_ middleware.Allower = admitter{}
	// The features are wired together here, so their cross-package contracts are checked here too.
	_ profiles.RatingSource = (*reviews.Service)(nil)
)

func (a admitter) Allow(ctx context.Context, key string, lim ratelimit.Limit) (ratelimit.Result, error) {
	return a.l.Allow(ctx, key, lim), nil
}

// buildHandler assembles the feature packages' routes and the middleware into the node's handler.
func (n *Node) buildHandler() (*assembly, error) {
	lim := ratelimit.New(n.redis, n.log)
	if err := lim.Register(n.registry); err != nil {
		return nil, err
	}
	tp, err := n.tracerProvider()
	if err != nil {
		return nil, err
	}
	tracing := middleware.NewTracing(tp, nil)
	bm, err := breaker.NewMetrics(n.registry)
	if err != nil {
		return nil, err
	}
	n.deps.Peers = peers.New(n.regions, n.tls,
		peers.Options{WrapTransport: tracing.Transport, Breakers: peers.NewBreakers(n.log, bm)})
	oauth, err := n.cfg.oauthProviders()
	if err != nil {
		return nil, err
	}
	asm, err := assemble(n.deps, featureSettings{cfg: n.cfg, breakers: bm, tokens: n.tokens, limiter: lim, oauth: oauth})
	if err != nil {
		return nil, err
	}
	for _, c := range append(asm.outbox.Collectors(), asm.matching.Collectors()...) {
		if err := n.registry.Register(c); err != nil {
			return nil, fmt.Errorf("feature metrics: %w", err)
		}
	}
	// Per-user and per-IP limits are admitted from a locally held share of each budget and settled with
	// Redis in batches (as the edge router does), so a request does not wait on a Redis round trip.
	adm, err := admission.New(n.redis, admission.DefaultConfig(), n.log)
	if err != nil {
		return nil, err
	}
	n.admission = adm
	user, ip := n.cfg.rateLimits()
	global, route, err := middlewares(n.registry, admitter{adm}, tracing, n.cfg.CORSOrigins, n.cfg.TrustedProxies, user, ip)
	if err != nil {
		return nil, err
	}
	n.handler, err = server.Handler(asm.routes, server.Options{
		Region:          n.cfg.Region,
		Log:             n.log,
		Auth:            asm.authenticator(n.verifier, n.cfg.FeatureAPIKeys),
		Middleware:      global,
		RouteMiddleware: route,
		Ops:             n.opsHandlers(),
	})
	if err != nil {
		return nil, err
	}
	return asm, nil
}
