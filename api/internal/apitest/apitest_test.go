package apitest

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/mtls/mtlstest"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/internal/wire"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The harness and the server's route assembly, through a small route set.
func TestHarnessServesRoutesWithAccessRules(t *testing.T) {
	h := New(t, Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		return []feature.Route{
			{Name: "whoami", Method: http.MethodGet, Path: "/whoami", Access: feature.Authenticated, Handler: func(w http.ResponseWriter, r *http.Request) error {
				p := feature.Caller(r)
				shard, err := a.ReadShard(r.Context(), p.KSID)
				if err != nil {
					return err
				}
				var email string
				if err := shard.Pool.QueryRow(r.Context(), `SELECT email FROM auth.users WHERE ksid = $1 AND id = $2`, p.KSID.Bytes(), p.UserID.Bytes()).Scan(&email); err != nil {
					return err
				}
				rest.WriteJSON(w, http.StatusOK, map[string]string{"id": p.UserID.String(), "email": email, "shard": shard.Shard})
				return nil
			}},
			{Name: "clientsOnly", Method: http.MethodPost, Path: "/clients-only/", Access: feature.Authenticated, Roles: []authn.Role{authn.Client}, Handler: func(w http.ResponseWriter, r *http.Request) error {
				var body struct {
					N int `json:"n"`
				}
				if err := rest.Decode(w, r, &body); err != nil {
					return err
				}
				rest.WriteJSON(w, http.StatusCreated, body)
				return nil
			}},
			{Name: "panics", Method: http.MethodGet, Path: "/panics", Access: feature.Public, Handler: func(w http.ResponseWriter, r *http.Request) error {
				panic("handler bug")
			}},
			{Name: "internalOnly", Method: http.MethodGet, Path: "/internal/ping", Access: feature.Internal, Handler: func(w http.ResponseWriter, r *http.Request) error {
				rest.WriteJSON(w, http.StatusOK, map[string]string{"region": a.Region})
				return nil
			}},
		}
	}})
	u := h.CreateUser(t, authn.Client, "eu-west")
	f := h.CreateUser(t, authn.Freelancer, "us-east")

	r := h.Do(t, "eu-west", Request{Method: "GET", Path: "/api/v1/whoami", Token: u.Token})
	if r.Status != 200 || !strings.Contains(string(r.Body), u.Email) || r.Header.Get("X-Meridian-Region") != "eu-west" || r.Header.Get("X-Request-ID") == "" {
		t.Fatalf("whoami: %d %s %v", r.Status, r.Body, r.Header)
	}
	if r := h.Do(t, "eu-west", Request{Method: "GET", Path: "/api/whoami", Token: u.Token}); r.Status != 200 {
		t.Fatalf("the /api alias: %d %s", r.Status, r.Body)
	}
	// Asked in the wrong region, the node answers with a replay hint.
	r = h.Do(t, "us-east", Request{Method: "GET", Path: "/api/v1/whoami", Token: u.Token})
	if r.Status != http.StatusMisdirectedRequest || r.Header.Get(wire.ReplayRegion) != "eu-west" || r.ErrorCode() != "wrong_region" {
		t.Fatalf("wrong region: %d %s %v", r.Status, r.Body, r.Header)
	}
	for name, req := range map[string]Request{
		"no token":         {Method: "GET", Path: "/api/v1/whoami"},
		"garbage token":    {Method: "GET", Path: "/api/v1/whoami", Token: "abc.def.ghi"},
		"unknown scheme":   {Method: "GET", Path: "/api/v1/whoami", Auth: "Basic dTpw"},
		"api keys are off": {Method: "GET", Path: "/api/v1/whoami", Auth: "ApiKey mk_x"},
	} {
		if r := h.Do(t, "eu-west", req); r.Status != 401 || r.ErrorCode() != "unauthenticated" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	if r := h.Do(t, "us-east", Request{Method: "POST", Path: "/api/v1/clients-only/", Token: f.Token, Body: map[string]int{"n": 1}}); r.Status != 403 {
		t.Errorf("freelancer on a clients-only route: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "eu-west", Request{Method: "POST", Path: "/api/v1/clients-only", Token: u.Token, Body: map[string]int{"n": 1}}); r.Status != 201 {
		t.Errorf("client, without the trailing slash: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "eu-west", Request{Method: "POST", Path: "/api/v1/clients-only/", Token: u.Token, Body: `{"n": 1, "x": 2}`}); r.Status != 400 || !strings.Contains(string(r.Body), `"x":"unknown field"`) {
		t.Errorf("unknown field: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "eu-west", Request{Method: "GET", Path: "/api/v1/panics"}); r.Status != 500 || r.ErrorCode() != "internal" || strings.Contains(string(r.Body), "handler bug") {
		t.Errorf("panic: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "eu-west", Request{Method: "GET", Path: "/api/v1/nope"}); r.Status != 404 || r.ErrorCode() != "not_found" {
		t.Errorf("unknown route: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "eu-west", Request{Method: "DELETE", Path: "/api/v1/whoami", Token: u.Token}); r.Status != 405 {
		t.Errorf("wrong method: %d %s", r.Status, r.Body)
	}
	// Internal routes take the caller's identity from its certificate: a router's is refused, a node's
	// of any region is served.
	if r := h.Do(t, "eu-west", Request{Method: "GET", Path: "/api/v1/internal/ping"}); r.Status != 403 || r.ErrorCode() != "forbidden" {
		t.Errorf("internal route with a router's certificate: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "eu-west", Request{Method: "GET", Path: "/api/v1/internal/ping", Header: http.Header{"X-Meridian-Internal": {"any secret"}}}); r.Status != 403 {
		t.Errorf("internal route with a router's certificate and a header secret: %d %s", r.Status, r.Body)
	}
	for _, from := range []string{"eu-west", "us-east"} {
		if r := h.Do(t, "eu-west", Request{Method: "GET", Path: "/api/v1/internal/ping", AsNode: from}); r.Status != 200 {
			t.Errorf("internal route with the certificate of the node of %s: %d %s", from, r.Status, r.Body)
		}
	}
	var got map[string]string
	if err := h.Nodes["eu-west"].App.Peers.Call(t.Context(), "ap-south", "GET", "/api/v1/internal/ping", nil, &got); err != nil || got["region"] != "ap-south" {
		t.Errorf("peer call: %v %v", got, err)
	}
}

// A node serves nobody without a client certificate of the CA: no TLS, TLS without a certificate, or a
// certificate of another CA with the same identity.
func TestNodesRequireClientCertificates(t *testing.T) {
	h := New(t, Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		return []feature.Route{{Name: "hello", Method: http.MethodGet, Path: "/hello", Access: feature.Public, Handler: func(w http.ResponseWriter, r *http.Request) error {
			rest.WriteJSON(w, http.StatusOK, map[string]string{"hello": "world"})
			return nil
		}}}
	}})
	url := h.Nodes["eu-west"].Server.URL + "/api/v1/hello"
	if resp, err := h.Client(t, mtls.Router("eu-west")).Get(url); err != nil || resp.StatusCode != 200 {
		t.Fatalf("with a router's certificate: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the server is not what is tested
	if resp, err := noCert.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("served without a client certificate: %d", resp.StatusCode)
	}
	plain := "http://" + strings.TrimPrefix(url, "https://")
	if resp, err := http.Get(plain); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("served over plain HTTP")
		}
	}
	of := mtlstest.New(t).Files(t, NodeIdentity("eu-west"))
	cert, err := tls.LoadX509KeyPair(of.Cert, of.Key)
	if err != nil {
		t.Fatal(err)
	}
	foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}} //nolint:gosec // the server is what is tested
	if resp, err := foreign.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("served a certificate of another CA: %d", resp.StatusCode)
	}
}
