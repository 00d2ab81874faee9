package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the PEM files of a process's TLS material.
type Files struct {
	// CA is the bundle of CA certificates that peers' certificates must chain to (one or more: during
	// a CA rotation it holds the old and the new).
	CA string
	// Cert is the process's certificate (then any intermediates); Key its private key.
	Cert, Key string
}

// Validate checks that every file is named.
func (f Files) Validate() error {
	switch {
	case f.CA == "":
		return errors.New("the CA bundle file is not set")
	case f.Cert == "":
		return errors.New("the certificate file is not set")
	case f.Key == "":
		return errors.New("the key file is not set")
	}
	return nil
}

// Options tune a Source.
type Options struct {
	// ReloadInterval is the least time between two looks at the files (default 1s).
	ReloadInterval time.Duration
	// Log receives reloads and failed reloads (default: discarded).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Source holds a process's current TLS material and reloads it when its files change. Its
// ServerConfig and ClientConfig read the material in force at each handshake.
type Source struct {
	files    Files
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	cur       atomic.Pointer[material]
	nextCheck atomic.Int64 // unix nanoseconds
	mu        sync.Mutex   // one reload at a time
}

// material is one loaded set of files.
type material struct {
	cert  tls.Certificate
	id    Identity
	roots *x509.CertPool
	stamp [3]stamp
}

type stamp struct {
	size int64
	mod  time.Time
}

// Load reads files; the certificate must carry an identity and chain to the bundle.
func Load(files Files, opts Options) (*Source, error) {
	if err := files.Validate(); err != nil {
		return nil, fmt.Errorf("mtls: %w", err)
	}
	if opts.ReloadInterval <= 0 {
		opts.ReloadInterval = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Source{files: files, interval: opts.ReloadInterval, log: opts.Log, now: opts.Now}
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	s.nextCheck.Store(s.now().Add(s.interval).UnixNano())
	return s, nil
}

// Identity is the identity of the certificate in force.
func (s *Source) Identity() Identity { return s.material().id }

// Leaf is the certificate in force.
func (s *Source) Leaf() *x509.Certificate { return s.material().cert.Leaf }

// Reload looks at the files now and loads them if they changed. A change that does not load leaves
// the material in force and is returned.
func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *Source) reloadLocked() error {
	s.nextCheck.Store(s.now().Add(s.interval).UnixNano())
	cur := s.cur.Load()
	st, err := s.stamps()
	if err != nil {
		return err
	}
	if st == cur.stamp {
		return nil
	}
	m, err := s.read()
	if err != nil {
		s.log.Warn("TLS files changed but do not load; keeping the certificate in force", "err", err, "cert", s.files.Cert)
		return err
	}
	s.cur.Store(m)
	s.log.Info("TLS certificate reloaded", "identity", m.id.String(), "not_after", m.cert.Leaf.NotAfter, "cert", s.files.Cert)
	return nil
}

// material returns the material in force, first looking at the files when the interval has passed.
// Only one caller looks; the others use what is in force.
func (s *Source) material() *material {
	if s.now().UnixNano() >= s.nextCheck.Load() && s.mu.TryLock() {
		_ = s.reloadLocked() // logged
		s.mu.Unlock()
	}
	return s.cur.Load()
}

func (s *Source) stamps() ([3]stamp, error) {
	var out [3]stamp
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, fmt.Errorf("mtls: %w", err)
		}
		out[i] = stamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// read loads the three files. The stamps are taken first: a file that changes while it is read is
// read again at the next look.
func (s *Source) read() (*material, error) {
	st, err := s.stamps()
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("mtls: CA bundle %s holds no PEM certificate", s.files.CA)
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return nil, fmt.Errorf("mtls: certificate %s and key %s: %w", s.files.Cert, s.files.Key, err)
	}
	id, err := IdentityOf(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("mtls: certificate %s: %w", s.files.Cert, err)
	}
	if err := verify(cert.Leaf, cert.Certificate[1:], roots, s.now(), x509.ExtKeyUsageAny); err != nil {
		return nil, fmt.Errorf("mtls: certificate %s does not chain to the CA bundle %s: %w", s.files.Cert, s.files.CA, err)
	}
	return &material{cert: cert, id: id, roots: roots, stamp: st}, nil
}

func verify(leaf *x509.Certificate, rawIntermediates [][]byte, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, raw := range rawIntermediates {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return err
		}
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// Accept decides whether a verified peer identity may connect.
type Accept func(Identity) error

// AnyIdentity accepts every router and node.
func AnyIdentity(Identity) error { return nil }

// NodesOnly accepts nodes of any region.
func NodesOnly(id Identity) error {
	if !id.IsNode() {
		return fmt.Errorf("mtls: %s is not an API node", id)
	}
	return nil
}

// NodeOf accepts the API nodes of region only: the server a call to region's nodes reaches must be
// one, whatever address Consul gave.
func NodeOf(region string) Accept {
	return func(id Identity) error {
		if !id.IsNode() || id.Region != region {
			return fmt.Errorf("mtls: %s is not an API node of %s", id, region)
		}
		return nil
	}
}

// ServerConfig is the configuration of a listener that requires a client certificate chaining to the
// CA bundle in force and carrying an identity that accept takes. Session tickets are off, so a
// reloaded bundle or certificate applies to every new connection.
func (s *Source) ServerConfig(accept Accept) *tls.Config {
	if accept == nil {
		accept = AnyIdentity
	}
	base := &tls.Config{MinVersion: tls.VersionTLS13}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := s.material()
		return &tls.Config{
			MinVersion:             tls.VersionTLS13,
			Certificates:           []tls.Certificate{m.cert},
			ClientAuth:             tls.RequireAndVerifyClientCert,
			ClientCAs:              m.roots,
			SessionTicketsDisabled: true,
			NextProtos:             []string{"http/1.1"},
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("mtls: no client certificate")
				}
				id, err := IdentityOf(cs.PeerCertificates[0])
				if err != nil {
					return err
				}
				return accept(id)
			},
		}, nil
	}
	return base
}

// ClientConfig is the configuration of a client that presents the certificate in force and accepts a
// server whose certificate chains to the CA bundle in force and carries an identity that accept takes
// (NodesOnly for calls to API nodes). Host names are not checked: nodes are dialled at the addresses
// Consul holds, and the identity is what is authorised.
func (s *Source) ClientConfig(accept Accept) *tls.Config {
	if accept == nil {
		accept = AnyIdentity
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is verified below against the bundle in force (it may be reloaded), and the
		// identity instead of a host name.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m := s.material()
			return &m.cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("mtls: the server sent no certificate")
			}
			raw := make([][]byte, 0, len(cs.PeerCertificates)-1)
			for _, c := range cs.PeerCertificates[1:] {
				raw = append(raw, c.Raw)
			}
			if err := verify(cs.PeerCertificates[0], raw, s.material().roots, s.now(), x509.ExtKeyUsageServerAuth); err != nil {
				return fmt.Errorf("mtls: server certificate: %w", err)
			}
			id, err := IdentityOf(cs.PeerCertificates[0])
			if err != nil {
				return err
			}
			return accept(id)
		},
	}
}
