package accounts

import (
	"bytes"
	"io"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/mailer"
)

// sentMail is a message the nodes wrote to the mail folder.
type sentMail struct {
	To, Subject, Body string
}

// inbox returns every message sent to addr, oldest first.
func (e *env) inbox(t *testing.T, addr string) []sentMail {
	t.Helper()
	entries, err := os.ReadDir(e.mailDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []sentMail
	for _, en := range entries { // ReadDir sorts by name, and names start with the time
		if !mailer.IsMessageFile(en.Name()) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(e.mailDir, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", en.Name(), err)
		}
		to, err := mail.ParseAddress(m.Header.Get("To"))
		if err != nil {
			t.Fatalf("%s: To: %v", en.Name(), err)
		}
		if to.Address != addr {
			continue
		}
		body, _ := io.ReadAll(m.Body)
		out = append(out, sentMail{To: to.Address, Subject: m.Header.Get("Subject"), Body: string(body)})
	}
	return out
}

var verifyLinkRE = regexp.MustCompile(`verify-email\?token=(mev_[A-Za-z0-9_.-]+)`)

// verifyToken is the token of the newest verification mail to addr.
func (e *env) verifyToken(t *testing.T, addr string) string {
	t.Helper()
	msgs := e.inbox(t, addr)
	if len(msgs) == 0 {
		t.Fatalf("no mail to %s", addr)
	}
	m := verifyLinkRE.FindStringSubmatch(msgs[len(msgs)-1].Body)
	if m == nil {
		t.Fatalf("no verification link in the mail to %s:\n%s", addr, msgs[len(msgs)-1].Body)
	}
	return m[1]
}

func (e *env) verify(t *testing.T, region, token string) *apitest.Response {
	t.Helper()
	return e.Do(t, region, apitest.Request{Method: "POST", Path: "/api/v1/auth/verify-email", Body: map[string]string{"token": token}})
}

// registerVerified registers a user, follows the link of its verification mail, and returns a token
// bundle issued after the verification (its access token carries email_verified).
func (e *env) registerVerified(t *testing.T, region, email string, role authn.Role) tokenBundle {
	t.Helper()
	b := e.register(t, region, email, role)
	home := b.User.Region
	if r := e.verify(t, home, e.verifyToken(t, email)); r.Status != http.StatusNoContent {
		t.Fatalf("verify %s: %d %s", email, r.Status, r.Body)
	}
	r := e.Do(t, home, apitest.Request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": b.RefreshToken}})
	if r.Status != http.StatusOK {
		t.Fatalf("refresh after verifying: %d %s", r.Status, r.Body)
	}
	var nb tokenBundle
	r.JSON(t, &nb)
	if !nb.User.EmailVerified {
		t.Fatalf("after verifying, user %s", r.Body)
	}
	return nb
}

func errorCode(t *testing.T, r *apitest.Response) string {
	t.Helper()
	var body struct {
		Error struct {
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.JSON(t, &body)
	return body.Error.Code
}

func containsAll(s string, parts ...string) bool {
	return !slices.ContainsFunc(parts, func(p string) bool { return !bytes.Contains([]byte(s), []byte(p)) })
}
