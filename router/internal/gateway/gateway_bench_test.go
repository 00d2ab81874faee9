package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/accesstoken"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/internal/ratelimit/admission"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/router/internal/accesslog"
	"github.com/8thdegree/meridian/router/internal/metrics"
	"github.com/8thdegree/meridian/router/internal/tokenkeys"
	"github.com/8thdegree/meridian/router/internal/upstream"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

const userBody = `{"id":"usr_065wzsb800g370x3nmh42kr104106105","email":"ada@example.com","name":"Ada Lovelace","role":"freelancer","region":"eu-west","created_at":"2026-11-26T09:00:00Z"}` + "\n"

func TestMain(m *testing.M) { testenv.Main(m) }

// canned answers every request with the same user, without a network: what is left to measure is the
// proxy's own work.
type canned struct{}

func (canned) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":      {"application/json; charset=utf-8"},
			"X-Meridian-Region": {"eu-west"},
			"X-Request-Id":      {r.Header.Get("X-Request-Id")},
			"Date":              {"Thu, 26 Nov 2026 09:00:00 GMT"},
		},
		ContentLength: int64(len(userBody)),
		Body:          io.NopCloser(strings.NewReader(userBody)),
		Request:       r,
	}, nil
}

type staticJWKS []byte

func (s staticJWKS) JWKS(context.Context) ([]byte, error) { return s, nil }

// testGateway is a gateway over the example topology with one static eu-west node, a canned
// transport, and a token of an eu-west user.
func testGateway(tb testing.TB, rt http.RoundTripper, log *slog.Logger) (*Gateway, string) {
	tb.Helper()
	key, _ := tokenissue.GenerateKey()
	ks, _ := tokenissue.NewSigningKeys(key)
	tokens, _ := tokenissue.New(tokenissue.Config{Issuer: "iss", Audience: "aud", TTL: time.Hour}, ks, nil)
	vc := tokenkeys.DefaultConfig()
	vc.Issuer, vc.Audience = "iss", "aud"
	v, err := tokenkeys.New(vc, staticJWKS(ks.JWKS()), nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		tb.Fatal(err)
	}
	pools, err := upstream.NewStatic(map[string][]string{"eu-west": {"127.0.0.1:1"}, "us-east": {"127.0.0.1:2"}, "ap-south": {"127.0.0.1:3"}}, upstream.DefaultHealth(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(tb)})
	tb.Cleanup(func() { _ = rdb.Close() })
	lim, _ := admission.New(rdb, admission.DefaultConfig(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go func() { _ = lim.Run(ctx) }()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g, err := New(Config{
		Region: "us-east", MaxBody: 1 << 20, MaxBuffered: 64 << 20, MaxAttempts: 3, VerifiedKeys: 1024, VerifiedKeyTTL: time.Minute, JWKSPath: "/api/v1/auth/jwks.json",
		IPLimit:        ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1 << 30},
		PrincipalLimit: ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1 << 30},
	}, Deps{Log: log, Metrics: metrics.New(), Pools: pools, Verifier: v, Limiter: lim, Transports: func(string) http.RoundTripper { return rt },
		Ready: func() (bool, []string) { return true, nil }, AccessLog: accesslog.New(io.Discard)})
	if err != nil {
		tb.Fatal(err)
	}
	tab, _ := topology.Compile(topology.Example())
	g.SetTable(tab)
	ksid := shardkey.NewKeyspaceID(0x40, []byte("bench"))
	id, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, ksid)
	tok, _, err := tokens.Issue(accesstoken.Subject{UserID: id, KSID: ksid, Role: "client", Region: "eu-west"})
	if err != nil {
		tb.Fatal(err)
	}
	return g, tok
}

// discard is a ResponseWriter that keeps nothing, so the benchmark measures the handler alone.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// requests hands out copies of one parsed request, as the server would (the handler edits its
// headers in place).
func requests(tok string) func() *http.Request {
	base := httptest.NewRequest(http.MethodGet, "http://router/api/v1/users/me", nil)
	base.RemoteAddr = "198.51.100.7:40000"
	base.Header.Set("Authorization", "Bearer "+tok)
	base.Header.Set("Accept", "application/json")
	base.Header.Set("User-Agent", "bench")
	return func() *http.Request {
		r := new(http.Request)
		*r = *base
		r.Header = base.Header.Clone()
		return r
	}
}

// BenchmarkHandler is the router's whole per-request work (token check, two rate limits, routing,
// node pick, breaker, proxying, metrics, access log) against a canned upstream; BenchmarkBareProxy is
// httputil.ReverseProxy's, on the same canned upstream.
func BenchmarkHandler(b *testing.B) {
	g, tok := testGateway(b, canned{}, nil)
	next := requests(tok)
	b.ReportAllocs()
	for b.Loop() {
		g.ServeHTTP(&discard{h: http.Header{}}, next())
	}
}

func BenchmarkBareProxy(b *testing.B) {
	target, _ := url.Parse("http://127.0.0.1:1")
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = canned{}
	next := requests("t")
	b.ReportAllocs()
	for b.Loop() {
		p.ServeHTTP(&discard{h: http.Header{}}, next())
	}
}
