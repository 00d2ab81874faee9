package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/internal/mtls"
)

// Every hop behind the edge is mutual TLS with identities from certificates: a login of an eu-west
// user through the us-east router goes router → us-east node → eu-west node (the password forwarded
// over the node-to-node channel, to /internal/login, which takes node certificates only); a node
// answers nobody without a certificate of the CA; a router's certificate is refused on internal
// routes, a node's of any region is served, and the old header secret opens nothing.
func TestE2EHopsAreMutualTLS(t *testing.T) {
	e := startE2E(t)
	email := fmt.Sprintf("mtls-%d@e2e.test", time.Now().UnixNano())
	reg := e.do(t, "us-east", "POST", "/api/v1/auth/register", "", map[string]any{
		"email": email, "password": "a long password 1", "name": "Tess", "role": "freelancer", "region": "eu-west",
	})
	if reg.status != 201 {
		t.Fatalf("register through the router: %d %v", reg.status, reg.body)
	}
	login := e.do(t, "us-east", "POST", "/api/v1/auth/login", "", map[string]any{"email": email, "password": "a long password 1"})
	if lu, _ := login.body["user"].(map[string]any); login.status != 200 || lu["region"] != "eu-west" || login.body["access_token"] == nil {
		t.Fatalf("cross-region login through the us-east router: %d %v %v", login.status, login.header, login.body)
	}
	// Global search asks every region's node over the node-to-node channel.
	if r := e.do(t, "ap-south", "GET", "/api/v1/jobs/search?q=anything&scope=global", "", nil); r.status != 200 {
		t.Fatalf("global search: %d %v", r.status, r.body)
	}

	node := e.cluster.Nodes["eu-west"]
	if !strings.HasPrefix(node, "https://") {
		t.Fatalf("node URL %s is not https", node)
	}
	internal := node + "/api/v1/internal/login"
	user, _ := reg.body["user"].(map[string]any)
	body := fmt.Sprintf(`{"user_id":%q,"email":%q,"password":"a long password 1"}`, user["id"], email)
	post := func(c *http.Client, header http.Header) (int, error) {
		req, err := http.NewRequest(http.MethodPost, internal, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	// No client certificate: the handshake fails. Plain HTTP on the API port: no answer served.
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the server is what is tested
	if code, err := post(noCert, nil); err == nil {
		t.Fatalf("a node answered %d without a client certificate", code)
	}
	plain := strings.Replace(internal, "https://", "http://", 1)
	if resp, err := cluster.Client().Post(plain, "application/json", strings.NewReader(body)); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("plain HTTP to the node: %d", resp.StatusCode)
		}
	}
	// A router's certificate (and the old shared-secret header) is refused on the internal route.
	rc := e.cluster.NodeClient(t, "us-east")
	if code, err := post(rc, http.Header{"X-Meridian-Internal": {"bench-internal-token-0123"}}); err != nil || code != http.StatusForbidden {
		t.Fatalf("internal login with a router's certificate: %d %v", code, err)
	}
	// A node's certificate of another region is served.
	nodeTLS := e.cluster.PKI().Source(t, mtls.Node("us-east", "us-east-9")).ClientConfig(mtls.NodesOnly)
	nc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: nodeTLS}}
	if code, err := post(nc, nil); err != nil || code != http.StatusOK {
		t.Fatalf("internal login with a node's certificate: %d %v", code, err)
	}
}
