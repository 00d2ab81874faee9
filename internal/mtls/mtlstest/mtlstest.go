// Package mtlstest gives tests a private CA and process certificates in a temporary folder, laid out
// as the local cluster lays out its own (mtls.Dir), so that test servers and clients talk mutual TLS
// as production processes do.
package mtlstest

import (
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/internal/mtls"
)

// PKI is a test's CA and the folder of its certificates.
type PKI struct {
	Dir mtls.Dir
	CA  *mtls.CA
}

// New creates a CA in a temporary folder of tb.
func New(tb testing.TB) *PKI {
	tb.Helper()
	d := mtls.Dir(tb.TempDir())
	ca, err := d.Ensure(nil, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return &PKI{Dir: d, CA: ca}
}

// Name is the file name of id's certificate: "router-us-east", "node-eu-west-<id>".
func Name(id mtls.Identity) string {
	return strings.Join([]string{string(id.Role), id.Region, id.ID}, "-")
}

// Files issues a certificate for id (valid for a day) and returns its files.
func (p *PKI) Files(tb testing.TB, id mtls.Identity) mtls.Files {
	tb.Helper()
	f := p.Dir.Files(strings.TrimSuffix(Name(id), "-"))
	if err := p.CA.IssueFiles(id, 24*time.Hour, f.Cert, f.Key); err != nil {
		tb.Fatal(err)
	}
	return f
}

// Source issues a certificate for id and loads it.
func (p *PKI) Source(tb testing.TB, id mtls.Identity) *mtls.Source {
	tb.Helper()
	s, err := mtls.Load(p.Files(tb, id), mtls.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
