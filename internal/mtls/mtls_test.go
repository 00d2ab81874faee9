package mtls

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestIdentityURIRoundTrip(t *testing.T) {
	for _, id := range []Identity{Router("us-east"), Node("eu-west", "api-eu-west-1")} {
		got, err := ParseURI(id.URI())
		if err != nil || got != id {
			t.Errorf("ParseURI(%s) = %v, %v", id, got, err)
		}
	}
	if s := Node("eu-west", "n1").String(); s != "spiffe://meridian/node/eu-west/n1" {
		t.Errorf("node URI %s", s)
	}
	for _, bad := range []string{
		"spiffe://other/router/us-east", "https://meridian/router/us-east", "spiffe://meridian/router/us-east/x",
		"spiffe://meridian/node/us-east", "spiffe://meridian/admin/us-east", "spiffe://meridian/router/US_EAST",
		"spiffe://meridian/node/eu-west/a%2Fb",
	} {
		u, err := url.Parse(bad)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := ParseURI(u); err == nil {
			t.Errorf("ParseURI(%s) = %v, want an error", bad, id)
		}
	}
	if err := Node("eu-west", "").Validate(); err == nil {
		t.Error("a node without ID validated")
	}
}

// pki writes a CA and the certificates of names into a temporary folder.
func pki(t *testing.T, certs map[string]Identity) (Dir, *CA) {
	t.Helper()
	d := Dir(t.TempDir())
	ca, err := d.Ensure(certs, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return d, ca
}

func load(t *testing.T, d Dir, name string) *Source {
	t.Helper()
	s, err := Load(d.Files(name), Options{ReloadInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// server answers with the identity of its peer.
func server(t *testing.T, src *Source, accept Accept) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := FromRequest(r)
		if !ok {
			http.Error(w, "no identity", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, id.String())
	}))
	srv.TLS = src.ServerConfig(accept)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func client(src *Source, accept Accept) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: src.ClientConfig(accept), DisableKeepAlives: true}}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", errors.New(resp.Status + " " + string(b))
	}
	return string(b), err
}

func TestMutualTLSNamesThePeer(t *testing.T) {
	d, _ := pki(t, map[string]Identity{"node": Node("eu-west", "n1"), "router": Router("us-east"), "other": Node("us-east", "n2")})
	srv := server(t, load(t, d, "node"), nil)
	got, err := get(client(load(t, d, "router"), NodesOnly), srv.URL)
	if err != nil || got != "spiffe://meridian/router/us-east" {
		t.Fatalf("router → node: %q, %v", got, err)
	}
	got, err = get(client(load(t, d, "other"), NodesOnly), srv.URL)
	if err != nil || got != "spiffe://meridian/node/us-east/n2" {
		t.Fatalf("node → node: %q, %v", got, err)
	}
	// A client that expects a node refuses a router's server certificate.
	rsrv := server(t, load(t, d, "router"), nil)
	if _, err := get(client(load(t, d, "node"), NodesOnly), rsrv.URL); err == nil || !strings.Contains(err.Error(), "not an API node") {
		t.Fatalf("a router accepted as a node: %v", err)
	}
	// A server that accepts only nodes refuses a router at the handshake.
	nsrv := server(t, load(t, d, "node"), NodesOnly)
	if _, err := get(client(load(t, d, "router"), nil), nsrv.URL); err == nil {
		t.Fatal("a NodesOnly server accepted a router")
	}
}

func TestServerRefusesWithoutClientCertificate(t *testing.T) {
	d, _ := pki(t, map[string]Identity{"node": Node("eu-west", "n1")})
	srv := server(t, load(t, d, "node"), nil)
	// The server's own CA is trusted: only the missing client certificate is wrong.
	plain := srv.Client()
	plain.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test's point
	if _, err := get(plain, srv.URL); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// Plain HTTP on the TLS port is no way round.
	resp, err := http.Get("http://" + srv.Listener.Addr().String())
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was served")
		}
	}
}

func TestCertificateOfAnotherCAIsRefused(t *testing.T) {
	d, _ := pki(t, map[string]Identity{"node": Node("eu-west", "n1")})
	other, _ := pki(t, map[string]Identity{"node": Node("eu-west", "n1")})
	srv := server(t, load(t, d, "node"), nil)
	if _, err := get(client(load(t, other, "node"), nil), srv.URL); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	// Load refuses a certificate that does not chain to its own bundle.
	f := other.Files("node")
	f.CA = d.CAFile()
	if _, err := Load(f, Options{}); err == nil {
		t.Fatal("Load took a certificate of another CA")
	}
}

func TestReloadServesTheNewCertificate(t *testing.T) {
	d, ca := pki(t, map[string]Identity{"node": Node("eu-west", "n1"), "router": Router("us-east")})
	src := load(t, d, "node")
	srv := server(t, src, nil)
	var seen atomic.Value
	c := client(load(t, d, "router"), func(id Identity) error { seen.Store(id); return nil })
	if _, err := get(c, srv.URL); err != nil {
		t.Fatal(err)
	}
	if id := seen.Load().(Identity); id != Node("eu-west", "n1") {
		t.Fatalf("server identity %v", id)
	}
	// The node's certificate is replaced on disk (a new identity, so the change shows).
	f := d.Files("node")
	if err := ca.IssueFiles(Node("eu-west", "n1-renewed"), time.Hour, f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	bumpMtime(t, f.Cert, f.Key)
	if _, err := get(c, srv.URL); err != nil {
		t.Fatal(err)
	}
	if id := seen.Load().(Identity); id != Node("eu-west", "n1-renewed") {
		t.Fatalf("after the reload the server presents %v", id)
	}
	if src.Identity() != Node("eu-west", "n1-renewed") {
		t.Fatalf("Source.Identity %v", src.Identity())
	}
}

func TestBrokenFilesKeepTheCertificateInForce(t *testing.T) {
	d, _ := pki(t, map[string]Identity{"node": Node("eu-west", "n1")})
	src := load(t, d, "node")
	f := d.Files("node")
	if err := os.WriteFile(f.Cert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	bumpMtime(t, f.Cert)
	if err := src.Reload(); err == nil {
		t.Fatal("a broken certificate file reloaded")
	}
	if src.Identity() != Node("eu-west", "n1") || src.Leaf() == nil {
		t.Fatal("the certificate in force was dropped")
	}
}

func TestEnsureKeepsCurrentCertificates(t *testing.T) {
	certs := map[string]Identity{"node": Node("eu-west", "n1")}
	d, _ := pki(t, certs)
	before, err := os.ReadFile(d.Files("node").Cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ensure(certs, time.Hour); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(d.Files("node").Cert)
	if string(before) != string(after) {
		t.Fatal("Ensure issued a current certificate again")
	}
	// Another identity under the same name is issued again.
	certs["node"] = Node("eu-west", "n9")
	if _, err := d.Ensure(certs, time.Hour); err != nil {
		t.Fatal(err)
	}
	if s := load(t, d, "node"); s.Identity() != Node("eu-west", "n9") {
		t.Fatalf("identity after Ensure: %v", s.Identity())
	}
	if m, _ := filepath.Glob(filepath.Join(string(d), ".*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

// bumpMtime moves the files' modification time forward, so a rewrite within the file system's time
// granularity is seen as a change.
func bumpMtime(t *testing.T, paths ...string) {
	t.Helper()
	at := time.Now().Add(time.Duration(len(paths)+1) * time.Second)
	for _, p := range paths {
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
}
