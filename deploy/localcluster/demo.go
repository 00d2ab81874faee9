package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

// DemoPassword is the password of every demo user.
const DemoPassword = "meridian-demo-password"

// demoUser is one user of the demo data set.
type demoUser struct {
	Email, Name, Role, Region string
	Profile                   map[string]any
	Jobs                      []map[string]any
}

var demoUsers = []demoUser{
	{Email: "alice@demo.8thdegree.test", Name: "Alice Client", Role: "client", Region: "us-east", Jobs: []map[string]any{
		{"title": "PostgreSQL sharding expert", "description": "<p>Help us <b>shard</b> a marketplace database across regions.</p>", "skills": []string{"postgresql", "go"}, "budget_min": 4000, "budget_max": 9000, "currency": "USD", "remote": true},
		{"title": "React dashboard for SREs", "description": "A small dashboard over our shard manager's JSON output.", "skills": []string{"react", "typescript"}, "budget_min": 1500, "budget_max": 3000, "currency": "USD", "remote": true},
	}},
	{Email: "dmitri@demo.8thdegree.test", Name: "Dmitri Client", Role: "client", Region: "eu-west", Jobs: []map[string]any{
		{"title": "Go backend engineer for payments", "description": "Build idempotent payment webhooks in Go with PostgreSQL.", "skills": []string{"go", "postgresql", "redis"}, "budget_min": 5000, "budget_max": 12000, "currency": "EUR", "remote": false},
	}},
	{Email: "bruno@demo.8thdegree.test", Name: "Bruno Freelancer", Role: "freelancer", Region: "eu-west", Profile: map[string]any{
		"headline": "Go and PostgreSQL engineer", "bio": "Ten years of <b>databases</b>.", "skills": []string{"go", "postgresql", "redis"}, "hourly_rate": 85, "country": "PT", "available": true}},
	{Email: "chitra@demo.8thdegree.test", Name: "Chitra Freelancer", Role: "freelancer", Region: "ap-south", Profile: map[string]any{
		"headline": "Front-end developer", "bio": "React, TypeScript and design systems.", "skills": []string{"react", "typescript"}, "hourly_rate": 60, "country": "IN", "available": true}},
}

// waitPassing waits until every region has a passing API node in Consul: registration needs the
// email directory, which may live in any region.
func waitPassing(ctx context.Context, client *consul.Client, t *topology.Topology) error {
	for _, r := range t.Regions {
		for {
			entries, _, err := client.Health().Service(r.APIService, "", true, (&consul.QueryOptions{}).WithContext(ctx))
			if err == nil && len(entries) > 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for a passing API node of %s in Consul: %w", r.Name, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

type demoClient struct {
	http *http.Client
	// base maps a region to a node (or router) base URL of that region.
	base map[string]string
	// mailDir is the folder the API nodes deliver mail to (verification links).
	mailDir string
}

func (c *demoClient) do(ctx context.Context, region, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base[region]+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, err
		}
	}
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusConflict {
		return resp.StatusCode, fmt.Errorf("%s %s in %s: %d %s", method, path, region, resp.StatusCode, bytes.TrimSpace(data))
	}
	return resp.StatusCode, nil
}

// seedDemo creates the demo users, their profiles and jobs, and one review, through the API. Users and
// jobs that exist already are kept, so running it again changes nothing.
func seedDemo(ctx context.Context, c *demoClient, out io.Writer) error {
	tokens := map[string]demoBundle{}
	created := 0
	for _, u := range demoUsers {
		var b demoBundle
		status, err := c.do(ctx, u.Region, "POST", "/api/v1/auth/register", "", map[string]any{"email": u.Email, "password": DemoPassword, "name": u.Name, "role": u.Role, "region": u.Region}, &b)
		if err != nil {
			return err
		}
		if status == http.StatusConflict {
			// Registered by an earlier run; logging in works from any region.
			if _, err := c.do(ctx, u.Region, "POST", "/api/v1/auth/login", "", map[string]any{"email": u.Email, "password": DemoPassword}, &b); err != nil {
				return err
			}
			if b.AccessToken == "" {
				return fmt.Errorf("demo user %s exists with another password; remove .local-cluster to start over", u.Email)
			}
		} else {
			created++
		}
		if !b.User.EmailVerified {
			// Demo users are verified the way anyone is: by following the link mailed to them.
			if b, err = verifyDemoUser(ctx, c, u, b); err != nil {
				return err
			}
		}
		tokens[u.Email] = b
		if u.Profile != nil {
			if _, err := c.do(ctx, u.Region, "PUT", "/api/v1/users/profile", b.AccessToken, u.Profile, nil); err != nil {
				return err
			}
		}
		if len(u.Jobs) > 0 {
			var mine struct {
				Items []json.RawMessage `json:"items"`
			}
			if _, err := c.do(ctx, u.Region, "GET", "/api/v1/jobs/", b.AccessToken, nil, &mine); err != nil {
				return err
			}
			if len(mine.Items) == 0 {
				for _, j := range u.Jobs {
					if _, err := c.do(ctx, u.Region, "POST", "/api/v1/jobs/", b.AccessToken, j, nil); err != nil {
						return err
					}
				}
			}
		}
	}
	// Alice reviews Bruno for her first job; the review lives in Bruno's region (eu-west).
	alice, bruno := tokens["alice@demo.8thdegree.test"], tokens["bruno@demo.8thdegree.test"]
	var jobs struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if _, err := c.do(ctx, "us-east", "GET", "/api/v1/jobs/", alice.AccessToken, nil, &jobs); err != nil {
		return err
	}
	if len(jobs.Items) == 0 {
		return errors.New("demo: alice has no jobs")
	}
	job := jobs.Items[len(jobs.Items)-1].ID // the oldest
	if _, err := c.do(ctx, "eu-west", "POST", "/api/v1/reviews/", alice.AccessToken, map[string]any{"job_id": job, "reviewee_id": bruno.User.ID, "rating": 5, "comment": "Sharded our database without a minute of downtime."}, nil); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo data: %d users created now (%d in all), password %q\n", created, len(demoUsers), DemoPassword)
	return nil
}

// demoBundle is what registration, login and refresh answer.
type demoBundle struct {
	User struct {
		ID            string `json:"id"`
		EmailVerified bool   `json:"email_verified"`
	} `json:"user"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// verifyDemoUser follows the newest verification link mailed to u (asking for a new one if it is
// missing, expired or used) and returns a session whose access token carries the verification.
func verifyDemoUser(ctx context.Context, c *demoClient, u demoUser, b demoBundle) (demoBundle, error) {
	for attempt := 0; ; attempt++ {
		tok, err := newestVerifyToken(c.mailDir, u.Email)
		if err != nil {
			return b, err
		}
		if tok != "" {
			status, err := c.do(ctx, u.Region, "POST", "/api/v1/auth/verify-email", "", map[string]string{"token": tok}, nil)
			if err == nil && status == http.StatusNoContent {
				break
			}
			if attempt > 0 {
				return b, fmt.Errorf("demo user %s: verifying the mailed link: %w", u.Email, err)
			}
		}
		if attempt > 0 {
			return b, fmt.Errorf("demo user %s: no verification mail in %s", u.Email, c.mailDir)
		}
		// No usable link (an earlier run's expired or was used): ask for a new one.
		if _, err := c.do(ctx, u.Region, "POST", "/api/v1/auth/verify-email/resend", b.AccessToken, nil, nil); err != nil {
			return b, err
		}
	}
	var nb demoBundle
	if _, err := c.do(ctx, u.Region, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": b.RefreshToken}, &nb); err != nil {
		return b, err
	}
	if !nb.User.EmailVerified {
		return b, fmt.Errorf("demo user %s is still unverified after following the link", u.Email)
	}
	return nb, nil
}

var mailedToken = regexp.MustCompile(`token=(mev_[A-Za-z0-9_.-]+)`)

// newestVerifyToken returns the token of the newest verification mail to addr in dir ("" if none).
// File names start with the delivery time, so the last match in name order is the newest.
func newestVerifyToken(dir, addr string) (string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	tok := ""
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		to, err := mail.ParseAddress(m.Header.Get("To"))
		if err != nil || !strings.EqualFold(to.Address, addr) {
			continue
		}
		body, _ := io.ReadAll(m.Body)
		if t := mailedToken.FindSubmatch(body); t != nil {
			tok = string(t[1])
		}
	}
	return tok, nil
}
