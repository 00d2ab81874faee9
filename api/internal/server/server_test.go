package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/mtls"
	"github.com/8thdegree/meridian/internal/mtls/mtlstest"
)

// An internal route's caller is the identity of its verified client certificate: without one (plain
// HTTP, MERIDIAN_TLS=off) the route is not there, a router is refused, a node of any region is served.
// A header claiming to be internal changes nothing.
func TestInternalRoutesTakeNodeCertificatesOnly(t *testing.T) {
	h, err := Handler([]feature.Route{{Name: "ping", Method: http.MethodGet, Path: "/internal/ping", Access: feature.Internal,
		Handler: func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(http.StatusNoContent); return nil }}}, Options{Region: "eu-west"})
	if err != nil {
		t.Fatal(err)
	}
	pki := mtlstest.New(t)
	state := func(id mtls.Identity) *tls.ConnectionState {
		b, err := os.ReadFile(pki.Files(t, id).Cert)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c, pki.CA.Cert}}}
	}
	for name, c := range map[string]struct {
		tls  *tls.ConnectionState
		want int
	}{
		"no TLS":               {nil, http.StatusNotFound},
		"a router":             {state(mtls.Router("eu-west")), http.StatusForbidden},
		"a node of the region": {state(mtls.Node("eu-west", "n1")), http.StatusNoContent},
		"a node of another":    {state(mtls.Node("ap-south", "n2")), http.StatusNoContent},
		"unverified":           {&tls.ConnectionState{PeerCertificates: state(mtls.Node("eu-west", "n1")).PeerCertificates}, http.StatusNotFound},
	} {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/internal/ping", nil)
		req.Header.Set("X-Meridian-Internal", "a secret of old")
		req.TLS = c.tls
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %d, want %d (%s)", name, rec.Code, c.want, rec.Body)
		}
	}
}
