package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Client is an HTTP client tuned for load: many idle connections per host, no proxy.
func Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}}
}

func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// PostJSON sends body and decodes a 2xx answer into out.
func PostJSON(c *http.Client, url, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Registered is a user registered through the API.
type Registered struct {
	User struct {
		ID            string `json:"id"`
		Region        string `json:"region"`
		EmailVerified bool   `json:"email_verified"`
	} `json:"user"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// Register creates a user through a node.
func Register(c *http.Client, base, email, role, region string) (Registered, error) {
	var r Registered
	err := PostJSON(c, base+"/api/v1/auth/register", "", map[string]any{"email": email, "password": "benchmark password 1", "name": "Bench " + role, "role": role, "region": region}, &r)
	return r, err
}

// RegisterVerified registers a user through base (a node or a router), follows the verification link
// mailed to them, and returns a session issued after the verification: a user who may post jobs.
func (c *Cluster) RegisterVerified(hc *http.Client, base, email, role, region string) (Registered, error) {
	r, err := Register(hc, base, email, role, region)
	if err != nil {
		return r, err
	}
	tok, err := c.VerificationToken(email)
	if err != nil {
		return r, err
	}
	if err := PostJSON(hc, base+"/api/v1/auth/verify-email", "", map[string]string{"token": tok}, nil); err != nil {
		return r, err
	}
	var v Registered
	if err := PostJSON(hc, base+"/api/v1/auth/refresh", "", map[string]string{"refresh_token": r.RefreshToken}, &v); err != nil {
		return r, err
	}
	if !v.User.EmailVerified {
		return r, fmt.Errorf("%s is not verified after following the link", email)
	}
	return v, nil
}

var mailedToken = regexp.MustCompile(`token=(mev_[A-Za-z0-9_.-]+)`)

// VerificationToken is the token of the newest verification mail to addr in the cluster's mail folder.
func (c *Cluster) VerificationToken(addr string) (string, error) {
	entries, err := os.ReadDir(c.MailDir)
	if err != nil {
		return "", err
	}
	tok := ""
	for _, e := range entries { // names start with the delivery time
		raw, err := os.ReadFile(filepath.Join(c.MailDir, e.Name()))
		if err != nil {
			return "", err
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		if to, err := mail.ParseAddress(m.Header.Get("To")); err != nil || to.Address != addr {
			continue
		}
		body, _ := io.ReadAll(m.Body)
		if t := mailedToken.FindSubmatch(body); t != nil {
			tok = string(t[1])
		}
	}
	if tok == "" {
		return "", fmt.Errorf("no verification mail to %s in %s", addr, c.MailDir)
	}
	return tok, nil
}
