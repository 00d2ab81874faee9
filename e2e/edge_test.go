package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/internal/ratelimit"
	"github.com/8thdegree/meridian/router"
)

// An API key's edge budget is charged for the requests a real node verified, and only for them: the
// node says so on its answer, the router charges the key and drops the mark; made-up secrets with the
// key's ID are refused by the node and spend nothing of the key's budget.
func TestE2EAPIKeyBudgetFollowsTheNodesVerification(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real API nodes and routers")
	}
	e := startE2E(t)
	const burst = 4
	base, _ := e.cluster.StartRouter(t, "us-east", func(c *router.Config) {
		c.PrincipalLimit = ratelimit.Limit{Rate: burst, Period: time.Hour, Burst: burst}
	})
	reg, err := e.cluster.RegisterVerified(cluster.Client(), e.routers["eu-west"], fmt.Sprintf("key-%d@e2e.test", time.Now().UnixNano()), "freelancer", "eu-west")
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	k := e.do(t, "eu-west", "POST", "/api/v1/auth/api-keys", reg.AccessToken, map[string]any{"name": "ci", "scopes": []string{"profile:read"}})
	if k.status != http.StatusCreated {
		t.Fatalf("create an API key: %d %v", k.status, k.body)
	}
	key := k.body["key"].(string)
	cut := strings.LastIndexByte(key, '_')
	bogus := key[:cut+1] + strings.Repeat("x", len(key)-cut-1)

	get := func(auth string) (int, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/users/me", nil)
		req.Header.Set("Authorization", "ApiKey "+auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for i := range 3 * burst {
		if st, _ := get(bogus); st != http.StatusUnauthorized {
			t.Fatalf("bogus secret %d: status %d, want the node's 401", i+1, st)
		}
	}
	for i := range burst {
		st, h := get(key)
		if st != http.StatusOK || h.Get("X-Meridian-Region") != "eu-west" {
			t.Fatalf("real key, request %d: %d %v", i+1, st, h)
		}
		if h.Get("X-Meridian-Key-Verified") != "" {
			t.Fatalf("the node's verified-key mark reached the client")
		}
	}
	if st, h := get(key); st != http.StatusTooManyRequests || h.Get("RateLimit-Limit") != fmt.Sprint(burst) {
		t.Fatalf("real key past its budget: %d %v, want 429 with RateLimit-Limit %d", st, h, burst)
	}
}
