package mailer

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpServer is a real SMTP server (emersion/go-smtp) on loopback, with STARTTLS and AUTH PLAIN.
type smtpServer struct {
	mu       sync.Mutex
	received []received
	addr     string
	pool     *x509.CertPool
}

type received struct {
	from string
	to   []string
	data []byte
	tls  bool
	user string
}

type session struct {
	srv  *smtpServer
	conn *smtp.Conn
	cur  received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "mailer" || pass != "s3cret-password" {
			return errors.New("bad credentials")
		}
		s.cur.user = user
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.cur.from = from; return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur.data, s.cur.tls = b, isTLS
	s.srv.mu.Lock()
	s.srv.received = append(s.srv.received, s.cur)
	s.srv.mu.Unlock()
	return nil
}
func (s *session) Reset()        { s.cur = received{user: s.cur.user} }
func (s *session) Logout() error { return nil }

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	// httptest's certificate is valid for 127.0.0.1; borrow it for the SMTP server's STARTTLS.
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	tlsConf := hs.TLS.Clone()
	pool := x509.NewCertPool()
	pool.AddCert(hs.Certificate())
	hs.Close()

	ss := &smtpServer{pool: pool}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: ss, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = tlsConf
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ss
}

func (ss *smtpServer) messages() []received {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]received(nil), ss.received...)
}

var msg = Message{To: "ada@example.com", Subject: "Verify your email", Text: "Your link: https://meridian.test/verify-email?token=usr_x.y\n"}

func checkMessage(t *testing.T, raw []byte) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not a mail message: %v\n%s", err, raw)
	}
	body, _ := io.ReadAll(m.Body)
	if m.Header.Get("To") != "<ada@example.com>" || m.Header.Get("Subject") != msg.Subject || m.Header.Get("Message-Id") == "" ||
		m.Header.Get("Date") == "" || !strings.Contains(string(body), "token=usr_x.y") {
		t.Fatalf("message: %v\n%s", m.Header, body)
	}
	if from, err := mail.ParseAddress(m.Header.Get("From")); err != nil || from.Address != "no-reply@meridian.test" {
		t.Fatalf("from: %q", m.Header.Get("From"))
	}
}

func TestSMTPSendsWithSTARTTLSAndAuth(t *testing.T) {
	ss := startSMTP(t)
	m, err := NewSMTP(SMTPConfig{Addr: ss.addr, Username: "mailer", Password: "s3cret-password", From: "Meridian <no-reply@meridian.test>", RootCAs: ss.pool, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := ss.messages()
	if len(got) != 1 || !got[0].tls || got[0].user != "mailer" || got[0].from != "no-reply@meridian.test" || len(got[0].to) != 1 || got[0].to[0] != "ada@example.com" {
		t.Fatalf("received %+v", got)
	}
	checkMessage(t, got[0].data)

	// A wrong password is an error, not a silent drop.
	bad, _ := NewSMTP(SMTPConfig{Addr: ss.addr, Username: "mailer", Password: "wrong", From: "no-reply@meridian.test", RootCAs: ss.pool})
	if err := bad.Send(context.Background(), msg); err == nil {
		t.Error("wrong SMTP password: no error")
	}
	// A server certificate the mailer does not trust stops the STARTTLS upgrade before AUTH.
	untrusted, _ := NewSMTP(SMTPConfig{Addr: ss.addr, Username: "mailer", Password: "s3cret-password", From: "no-reply@meridian.test", RootCAs: x509.NewCertPool()})
	if err := untrusted.Send(context.Background(), msg); err == nil {
		t.Error("untrusted certificate: no error")
	}
	if n := len(ss.messages()); n != 1 {
		t.Errorf("%d messages delivered, want only the first", n)
	}
}

func TestSMTPTimesOut(t *testing.T) {
	// A server that accepts the connection and never greets.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	m, err := NewSMTP(SMTPConfig{Addr: l.Addr().String(), From: "no-reply@meridian.test", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Send(ctx, msg); err == nil {
		t.Fatal("a silent server: no error")
	}
	if ctx.Err() != nil {
		t.Fatal("the SMTP timeout did not end the attempt; the context did")
	}
}

func TestSMTPConfig(t *testing.T) {
	for name, c := range map[string]SMTPConfig{
		"no port":      {Addr: "smtp.example.com", From: "a@b.co"},
		"bad port":     {Addr: "smtp.example.com:x", From: "a@b.co"},
		"bad tls mode": {Addr: "smtp.example.com:587", From: "a@b.co", TLS: "ssl3"},
		"bad from":     {Addr: "smtp.example.com:587", From: "not an address"},
		"negative":     {Addr: "smtp.example.com:587", From: "a@b.co", Timeout: -time.Second},
	} {
		if _, err := NewSMTP(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDirWritesOneFilePerMessage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	d, err := NewDir(dir, "Meridian <no-reply@meridian.test>")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := d.Send(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d files, want 3", len(entries))
	}
	for _, e := range entries {
		if !IsMessageFile(e.Name()) {
			t.Errorf("%s is not a message file", e.Name())
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		checkMessage(t, raw)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("mail folder mode %v", st.Mode().Perm())
	}
	if err := d.Send(context.Background(), Message{To: "not an address", Subject: "x", Text: "y"}); err == nil {
		t.Error("a bad recipient was written")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Send(ctx, msg); err == nil {
		t.Error("a cancelled send was written")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("%d files after refused sends", len(entries))
	}
}

// BenchmarkDirSend is one message into the mail folder (built, written, synced, renamed), beside the
// baseline of writing and syncing the same number of bytes with os.WriteFile and f.Sync.
func BenchmarkDirSend(b *testing.B) {
	dir := b.TempDir()
	d, err := NewDir(dir, "no-reply@meridian.test")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("dir", func(b *testing.B) {
		for b.Loop() {
			if err := d.Send(context.Background(), msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline", func(b *testing.B) {
		data := bytes.Repeat([]byte("x"), 700)
		i := 0
		for b.Loop() {
			i++
			f, err := os.Create(filepath.Join(dir, "base-"+strconv.Itoa(i)))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = f.Write(data)
			_ = f.Sync()
			_ = f.Close()
		}
	})
}
