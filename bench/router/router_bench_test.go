// Package routerbench measures what the edge router costs: GET /api/v1/users/me-shaped requests sent
// three ways in one run (straight to the upstream, through the router, and through Go's bare
// httputil.ReverseProxy in front of the same upstream), so that a noisy machine moves all three
// together and the ratios hold.
//
// BenchmarkAddedLatency uses one connection per way and reports the latency the router and the bare
// proxy add at p50 and p99 (microseconds). BenchmarkThroughput drives each way with parallel clients
// to saturation and reports requests per second and their ratios. Goals (issue 4): at most 50 µs added
// at p50, and at least the bare proxy's throughput at saturation although the router also verifies
// the token, routes and rate-limits (with the shared Redis budget).
//
// The upstream is a stand-in node answering a fixed JSON body (a user), registered in the test Consul
// as eu-west's API service; the router is a us-east router, so every request is a cross-region route.
// The router writes its JSON access log (its own encoder, as cmd/router runs it) to io.Discard: the
// formatting is paid, the I/O is not.
//
// The hop behind the router is mutual TLS, as in production: the router and the bare proxy call the
// upstream with a router's certificate, and the direct way presents one too. The Plaintext variants
// run the same stand-in and router over plain HTTP, so one run shows what TLS costs.
//
//	go test ./bench/router -run '^$' -bench . -benchtime 20000x    # full size
//	go test ./bench/router -run '^$' -bench . -benchtime 1x        # smoke, as in the normal test run
package routerbench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/router"
	"github.com/8thdegree/meridian/router/routertest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// userBody is what GET /users/me answers: one user, as the contract shapes it.
const userBody = `{"id":"usr_065wzsb800g370x3nmh42kr104106105","email":"ada@example.com","name":"Ada Lovelace",` +
	`"role":"freelancer","region":"eu-west","created_at":"2026-11-26T09:00:00Z"}` + "\n"

// ways are the three paths a request takes, in the order they are reported.
const (
	direct = iota
	viaRouter
	viaBare
	ways
)

var wayNames = [ways]string{"direct", "router", "bare"}

// rig is the three ways to the same upstream.
type rig struct {
	urls [ways]string
	// upstreamTLS is the direct way's TLS (a router's certificate; nil over plain HTTP).
	upstreamTLS *tls.Config
	token       string
	// bodyLen is the length of the upstream's answer, when it is fixed (the stand-in); 0 skips the check.
	bodyLen int
}

// idleConns is the keep-alive pool every proxy and client gets, so that saturation measures proxying,
// not connection churn (the default transport keeps only 2 idle connections per host).
const idleConns = 256

func setup(b *testing.B, plaintext bool) *rig {
	b.Helper()
	env := routertest.New(b, routertest.Options{
		NodesPerRegion: -1,
		Plaintext:      plaintext,
		Handler: func(*routertest.Node) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h["Content-Type"] = []string{"application/json; charset=utf-8"}
				h["X-Meridian-Region"] = []string{"eu-west"}
				_, _ = io.WriteString(w, userBody)
			})
		},
	})
	node := env.StartNode(b, "eu-west")
	user := env.User(b, "eu-west")
	rt := env.StartRouterLogged(b, "us-east", func(c *router.Config) {
		// Limits that hold (shared through Redis) but that the benchmark never reaches.
		c.IPLimit = ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1 << 30}
		c.PrincipalLimit = ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1 << 30}
		c.MaxIdleConnsPerNode = idleConns
		// As cmd/router runs it: the access log through the router's encoder (here into io.Discard:
		// the formatting is paid, the I/O is not); other events through slog.
		c.AccessLog = io.Discard
	}, slog.New(slog.DiscardHandler))

	up := env.ClientTLS(b, mtls.Router("us-east"))
	return &rig{urls: [ways]string{node.URL(), rt.URL, bareProxy(b, node.URL(), up)}, upstreamTLS: up, token: user.Token, bodyLen: len(userBody)}
}

// bareProxy serves Go's bare httputil.ReverseProxy in front of upstream, with the same keep-alive pool
// and upstream TLS the router gets, and returns its URL.
func bareProxy(b *testing.B, upstream string, upstreamTLS *tls.Config) string {
	b.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		b.Fatal(err)
	}
	bare := httputil.NewSingleHostReverseProxy(target)
	bt := http.DefaultTransport.(*http.Transport).Clone()
	bt.MaxIdleConnsPerHost = idleConns
	bt.TLSClientConfig = upstreamTLS
	bare.Transport = bt
	srv := httptest.NewServer(bare)
	b.Cleanup(srv.Close)
	b.Cleanup(bt.CloseIdleConnections)
	return srv.URL
}

// setupRealNode is setup with a real API node (api.Node over real shards, token checks, rate limits
// and the user's row read from PostgreSQL) as eu-west's upstream, and the router in us-east.
func setupRealNode(b *testing.B) *rig {
	b.Helper()
	c := cluster.Start(b)
	client := c.NodeClient(b, "us-east")
	u, err := cluster.Register(client, c.Nodes["eu-west"], fmt.Sprintf("bench-%d@bench.test", time.Now().UnixNano()), "freelancer", "eu-west")
	if err != nil {
		b.Fatal(err)
	}
	routerURL, _ := c.StartRouter(b, "us-east", func(cfg *router.Config) {
		cfg.IPLimit = ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1 << 30}
		cfg.PrincipalLimit = cfg.IPLimit
		cfg.MaxIdleConnsPerNode = idleConns
	})
	up := client.Transport.(*http.Transport).TLSClientConfig
	return &rig{urls: [ways]string{c.Nodes["eu-west"], routerURL, bareProxy(b, c.Nodes["eu-west"], up)}, upstreamTLS: up, token: u.AccessToken}
}

// clients returns a client per way with conns connections; the direct way's presents a router's
// certificate.
func (rg *rig) clients(conns int) [ways]*http.Client {
	var cs [ways]*http.Client
	for w := range ways {
		cs[w] = newClient(conns)
	}
	cs[direct].Transport.(*http.Transport).TLSClientConfig = rg.upstreamTLS
	return cs
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
	}}
}

// get sends one GET /api/v1/users/me and reads the answer.
func (rg *rig) get(c *http.Client, way int) error {
	req, err := http.NewRequest(http.MethodGet, rg.urls[way]+"/api/v1/users/me", nil)
	if err != nil {
		return err
	}
	req.Header["Authorization"] = []string{"Bearer " + rg.token}
	req.Header["Accept"] = []string{"application/json"}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || (rg.bodyLen > 0 && n != int64(rg.bodyLen)) {
		return fmt.Errorf("%s: status %d, %d bytes", wayNames[way], resp.StatusCode, n)
	}
	return nil
}

// warm opens the connections, fills the router's token cache and rate-limit allowances.
func (rg *rig) warm(b *testing.B, clients [ways]*http.Client, n int) {
	b.Helper()
	for range n {
		for w := range ways {
			if err := rg.get(clients[w], w); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAddedLatency: one connection per way; each iteration sends one request each way, in a
// rotating order so that no way always goes first.
func BenchmarkAddedLatency(b *testing.B) { addedLatency(b, setup(b, false)) }

// BenchmarkAddedLatencyPlaintext is BenchmarkAddedLatency with plain HTTP behind the router.
func BenchmarkAddedLatencyPlaintext(b *testing.B) { addedLatency(b, setup(b, true)) }

// BenchmarkAddedLatencyRealNode is BenchmarkAddedLatency in front of a real API node.
func BenchmarkAddedLatencyRealNode(b *testing.B) { addedLatency(b, setupRealNode(b)) }

func addedLatency(b *testing.B, rg *rig) {
	clients := rg.clients(1)
	rg.warm(b, clients, 200)
	var samples [ways][]time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		for k := range ways {
			w := (i + k) % ways
			start := time.Now()
			if err := rg.get(clients[w], w); err != nil {
				b.Fatal(err)
			}
			samples[w] = append(samples[w], time.Since(start))
		}
		i++
	}
	b.StopTimer()
	var p50, p99 [ways]float64
	for w := range ways {
		p50[w], p99[w] = percentile(samples[w], 0.50), percentile(samples[w], 0.99)
	}
	us := func(d float64) float64 { return d / 1e3 }
	b.ReportMetric(us(p50[direct]), "direct-p50-µs")
	b.ReportMetric(us(p50[viaRouter]-p50[direct]), "router-added-p50-µs")
	b.ReportMetric(us(p99[viaRouter]-p99[direct]), "router-added-p99-µs")
	b.ReportMetric(us(p50[viaBare]-p50[direct]), "bare-added-p50-µs")
	b.ReportMetric(us(p99[viaBare]-p99[direct]), "bare-added-p99-µs")
}

func percentile(s []time.Duration, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return float64(s[min(int(q*float64(len(s))), len(s)-1)])
}

// parallelism is the number of concurrent clients; on a small machine a few dozen saturate the chain.
const parallelism = 32

// BenchmarkThroughput: b.N requests each way, sent by parallelism clients at once, in rounds that
// alternate the ways; reports requests per second each way and the ratios.
func BenchmarkThroughput(b *testing.B) { throughput(b, setup(b, false)) }

// BenchmarkThroughputPlaintext is BenchmarkThroughput with plain HTTP behind the router.
func BenchmarkThroughputPlaintext(b *testing.B) { throughput(b, setup(b, true)) }

// BenchmarkThroughputRealNode is BenchmarkThroughput in front of a real API node.
func BenchmarkThroughputRealNode(b *testing.B) { throughput(b, setupRealNode(b)) }

func throughput(b *testing.B, rg *rig) {
	clients := rg.clients(parallelism)
	rg.warm(b, clients, parallelism)
	const rounds = 5
	perRound := max(b.N/rounds, parallelism)
	var elapsed [ways]time.Duration
	var done [ways]int
	b.ReportAllocs()
	b.ResetTimer()
	for r := range rounds {
		for k := range ways {
			w := (r + k) % ways
			d, err := burst(rg, clients[w], w, perRound)
			if err != nil {
				b.Fatal(err)
			}
			elapsed[w] += d
			done[w] += perRound
		}
	}
	b.StopTimer()
	var rps [ways]float64
	for w := range ways {
		rps[w] = float64(done[w]) / elapsed[w].Seconds()
	}
	b.ReportMetric(rps[direct], "direct-req/s")
	b.ReportMetric(rps[viaRouter], "router-req/s")
	b.ReportMetric(rps[viaBare], "bare-req/s")
	b.ReportMetric(rps[viaRouter]/rps[viaBare], "router/bare")
	b.ReportMetric(rps[viaRouter]/rps[direct], "router/direct")
	b.ReportMetric(rps[viaBare]/rps[direct], "bare/direct")
}

// burst sends n requests with parallelism workers and returns how long they took.
func burst(rg *rig, c *http.Client, way, n int) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, parallelism)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	for range parallelism {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				if err := rg.get(c, way); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	select {
	case err := <-errs:
		return d, err
	default:
	}
	return d, nil
}
