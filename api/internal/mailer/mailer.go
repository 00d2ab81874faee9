// Package mailer sends the node's mail (email verification links) through a Mailer: SMTP for real
// deployments, or a folder that receives one .eml file per message, which the local cluster and the
// tests read. The node's configuration picks one (MERIDIAN_SMTP_ADDR or MERIDIAN_MAIL_DIR).
//
// Messages are built and written by github.com/wneessen/go-mail (RFC 5322 headers, MIME, encodings,
// STARTTLS and SMTP AUTH), so both mailers produce the same bytes for the same message.
package mailer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"
)

// Message is one plain-text mail to one recipient.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Mailer sends messages. Send returns once the message is handed over (accepted by the SMTP server,
// or written to its file); an error means it was not.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// build turns m into a go-mail message from from.
func build(from string, m Message, now time.Time) (*mail.Msg, error) {
	// 8bit, not quoted-printable: the text is short lines of UTF-8, and a link in it stays readable
	// (and copyable) in the raw .eml file.
	msg := mail.NewMsg(mail.WithEncoding(mail.NoEncoding))
	if err := msg.From(from); err != nil {
		return nil, fmt.Errorf("mailer: from %q: %w", from, err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("mailer: to: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDateWithValue(now)
	msg.SetMessageID()
	msg.SetBodyString(mail.TypeTextPlain, m.Text)
	return msg, nil
}

// TLSMode says how the SMTP connection is protected.
type TLSMode string

const (
	// STARTTLS upgrades a plain connection (port 587) and fails if the server cannot: the default.
	STARTTLS TLSMode = "starttls"
	// ImplicitTLS connects with TLS from the first byte (port 465).
	ImplicitTLS TLSMode = "tls"
	// NoTLS sends in clear: only for a relay on the same host or a test server.
	NoTLS TLSMode = "none"
)

// SMTPConfig is an SMTP submission server and the account that sends.
type SMTPConfig struct {
	// Addr is host:port of the submission server.
	Addr string
	// Username and Password authenticate (SMTP AUTH, the strongest mechanism both sides offer);
	// empty Username sends without AUTH.
	Username, Password string
	// TLS is STARTTLS (default), ImplicitTLS or NoTLS. AUTH is never sent in clear unless NoTLS.
	TLS TLSMode
	// From is the sender address (Meridian <no-reply@example.com>).
	From string
	// Timeout bounds connecting and each command (default 10 s); Send's context bounds the whole.
	Timeout time.Duration
	// RootCAs, when set, are the CAs trusted for the server's certificate (a private relay); nil is the
	// system pool.
	RootCAs *x509.CertPool
}

// SMTP sends through an SMTP submission server.
type SMTP struct {
	cfg  SMTPConfig
	host string
	port int
	now  func() time.Time
}

// NewSMTP checks cfg and returns its mailer. It does not connect.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	host, p, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("mailer: SMTP address %q is not host:port", cfg.Addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("mailer: SMTP port %q is not a port", p)
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = STARTTLS
	case STARTTLS, ImplicitTLS, NoTLS:
	default:
		return nil, fmt.Errorf("mailer: TLS mode %q is not starttls, tls or none", cfg.TLS)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("mailer: SMTP timeout must be positive")
	}
	if _, err := build(cfg.From, Message{To: "check@example.com"}, time.Now()); err != nil {
		return nil, err
	}
	return &SMTP{cfg: cfg, host: host, port: port, now: time.Now}, nil
}

func (s *SMTP) client() (*mail.Client, error) {
	opts := []mail.Option{mail.WithPort(s.port), mail.WithTimeout(s.cfg.Timeout)}
	switch s.cfg.TLS {
	case STARTTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case ImplicitTLS:
		opts = append(opts, mail.WithSSL())
	case NoTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if s.cfg.RootCAs != nil {
		opts = append(opts, mail.WithTLSConfig(&tls.Config{ServerName: s.host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}))
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password))
	}
	return mail.NewClient(s.host, opts...)
}

// Send delivers m to the submission server: one connection per message (verification mail is rare).
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg, err := build(s.cfg.From, m, s.now())
	if err != nil {
		return err
	}
	c, err := s.client()
	if err != nil {
		return fmt.Errorf("mailer: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mailer: sending through %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Dir writes each message to a folder as <time>-<random>.eml, the way an SMTP server would deliver
// it: the local cluster's inbox.
type Dir struct {
	dir, from string
	now       func() time.Time
}

// NewDir returns a mailer into dir, which it creates (mode 0700: the mail holds live links).
func NewDir(dir, from string) (*Dir, error) {
	if dir == "" {
		return nil, errors.New("mailer: no mail folder")
	}
	if _, err := build(from, Message{To: "check@example.com"}, time.Now()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mailer: %w", err)
	}
	return &Dir{dir: dir, from: from, now: time.Now}, nil
}

// Send writes m to a new file. It writes a temporary name and renames it, so a reader never sees half
// a message.
func (d *Dir) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg, err := build(d.from, m, d.now())
	if err != nil {
		return err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	name := d.now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(rnd[:]) + ".eml"
	tmp := filepath.Join(d.dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("mailer: %w", err)
	}
	_, werr := msg.WriteTo(f)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("mailer: writing %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, name)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("mailer: %w", err)
	}
	return nil
}

// IsMessageFile reports whether a file name in a Dir folder is a delivered message.
func IsMessageFile(name string) bool {
	return strings.HasSuffix(name, ".eml") && !strings.HasPrefix(name, ".")
}
