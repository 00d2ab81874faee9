package mtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a private certificate authority that issues process certificates: the local cluster's and the
// test harnesses'. Production plugs in its own PKI through Files instead.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA creates a self-signed CA (ECDSA P-256) valid for ttl.
func NewCA(name string, ttl time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Meridian"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads a CA written by WriteFiles.
func LoadCA(certFile, keyFile string) (*CA, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("mtls: %s holds no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return nil, fmt.Errorf("mtls: %s holds no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !cert.IsCA {
		return nil, errors.New("mtls: not a CA certificate and key")
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// CertPEM is the CA's certificate, the bundle that processes trust.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// WriteFiles writes the CA's certificate (0644) and key (0600).
func (ca *CA) WriteFiles(certFile, keyFile string) error {
	kb, err := keyPEM(ca.Key)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, kb, 0o600); err != nil {
		return err
	}
	return writeFile(certFile, ca.CertPEM(), 0o644)
}

// Issue mints a certificate for id valid for ttl, for both server and client use, with 127.0.0.1 and
// localhost as names too (so that tools such as curl can reach a local node with the CA bundle). It
// returns the certificate and key in PEM.
func (ca *CA) Issue(id Identity, ttl time.Duration) (cert, key []byte, err error) {
	if err := id.Validate(); err != nil {
		return nil, nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.String(), Organization: []string{"Meridian"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := keyPEM(k)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kb, nil
}

// IssueFiles issues a certificate for id and writes it and its key. The key is written first: a
// Source that looks between the two writes sees a mismatch, keeps what it has and looks again.
func (ca *CA) IssueFiles(id Identity, ttl time.Duration, certFile, keyFile string) error {
	cb, kb, err := ca.Issue(id, ttl)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, kb, 0o600); err != nil {
		return err
	}
	return writeFile(certFile, cb, 0o644)
}

// Current reports whether certFile holds a certificate of id issued by ca that is valid for at least
// minLeft more: a set-up that keeps certificates can tell which to issue again.
func (ca *CA) Current(id Identity, certFile string, minLeft time.Duration) bool {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return false
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return false
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return false
	}
	got, err := IdentityOf(c)
	if err != nil || got != id || time.Until(c.NotAfter) < minLeft {
		return false
	}
	return c.CheckSignatureFrom(ca.Cert) == nil
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeFile replaces path atomically (a temporary file renamed over it), so a reader sees the old or
// the new content, never half of one.
func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("mtls: no randomness: " + err.Error())
	}
	return n
}

// Dir is a folder of PEM files for a set of processes, as the local cluster and the test harnesses
// lay it out: ca.pem (the bundle), ca-key.pem, and <name>.pem with <name>-key.pem per process.
type Dir string

// CAFile is the CA bundle.
func (d Dir) CAFile() string { return filepath.Join(string(d), "ca.pem") }

// CAKeyFile is the CA's key.
func (d Dir) CAKeyFile() string { return filepath.Join(string(d), "ca-key.pem") }

// Files are the files of the process name.
func (d Dir) Files(name string) Files {
	return Files{CA: d.CAFile(), Cert: filepath.Join(string(d), name+".pem"), Key: filepath.Join(string(d), name+"-key.pem")}
}

// Ensure creates the CA when the folder has none, and issues (again) the certificate of every process
// of certs (name → identity) that is missing, of another identity or CA, or valid for less than a
// quarter of ttl. It returns the CA.
func (d Dir) Ensure(certs map[string]Identity, ttl time.Duration) (*CA, error) {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return nil, err
	}
	ca, err := LoadCA(d.CAFile(), d.CAKeyFile())
	if errors.Is(err, os.ErrNotExist) {
		if ca, err = NewCA("Meridian private CA", 4*ttl); err != nil {
			return nil, err
		}
		err = ca.WriteFiles(d.CAFile(), d.CAKeyFile())
	}
	if err != nil {
		return nil, fmt.Errorf("mtls: CA in %s: %w", d, err)
	}
	for name, id := range certs {
		f := d.Files(name)
		if _, err := os.Stat(f.Key); err == nil && ca.Current(id, f.Cert, ttl/4) {
			continue
		}
		if err := ca.IssueFiles(id, ttl, f.Cert, f.Key); err != nil {
			return nil, fmt.Errorf("mtls: certificate of %s: %w", name, err)
		}
	}
	return ca, nil
}
