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
	"strconv"
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
	status, _, err := c.call(ctx, region, method, path, token, body, out)
	return status, err
}

// call sends one request to region's base URL and decodes a 2xx answer into out. It also returns the
// error code of a 409 answer ("" otherwise), which it does not treat as an error: an existing object
// is how a second run of the seeding finds what the first made. Any other non-2xx answer is an error.
//
// A 429 is waited out (its Retry-After, for at most demoRateLimitWait in all) and the request sent
// again: the seeding registers dozens of users from one address, more than a node's budget for
// anonymous requests lets through at once.
func (c *demoClient) call(ctx context.Context, region, method, path, token string, body, out any) (int, string, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		payload = b
	}
	deadline := time.Now().Add(demoRateLimitWait)
	var (
		resp *http.Response
		data []byte
	)
	for {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base[region]+path, rd)
		if err != nil {
			return 0, "", err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if resp, err = c.http.Do(req); err != nil {
			return 0, "", err
		}
		data, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			break
		}
		wait := retryAfter(resp.Header.Get("Retry-After"))
		select {
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-time.After(wait):
		}
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, "", err
		}
	}
	if resp.StatusCode == http.StatusConflict {
		return resp.StatusCode, errorCode(data), nil
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, errorCode(data), &demoError{what: fmt.Sprintf("%s %s in %s", method, path, region),
			status: resp.StatusCode, code: errorCode(data), body: string(bytes.TrimSpace(data))}
	}
	return resp.StatusCode, "", nil
}

// demoRateLimitWait bounds how long one demo request waits out 429 answers.
const demoRateLimitWait = 2 * time.Minute

// retryAfter is the wait a Retry-After header (in seconds) asks for, from 100 ms to 10 s; one second
// when it is missing or not a number.
func retryAfter(h string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil {
		return time.Second
	}
	return min(max(time.Duration(s)*time.Second, 100*time.Millisecond), 10*time.Second)
}

// demoError is a non-2xx answer (other than 409) to a demo request.
type demoError struct {
	what, code, body string
	status           int
}

func (e *demoError) Error() string { return fmt.Sprintf("%s: %d %s", e.what, e.status, e.body) }

// errorCode is the code of an error answer ({"error": {"code": ...}}), "" if it has none.
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// seedDemo creates the demo users (the named ones and the generated market's), their profiles and jobs
// through the API, then the hiring of the demo (seedHiring). Users, jobs, proposals, contracts and reviews that exist already are kept, so running it
// again changes nothing. It returns the IDs the summary's examples name.
func seedDemo(ctx context.Context, c *demoClient, out io.Writer) (demoSeed, error) {
	tokens := map[string]demoBundle{}
	created := 0
	users := demoAllUsers()
	began := time.Now()
	for _, u := range users {
		var b demoBundle
		status, err := c.do(ctx, u.Region, "POST", "/api/v1/auth/register", "", map[string]any{"email": u.Email, "password": DemoPassword, "name": u.Name, "role": u.Role, "region": u.Region}, &b)
		if err != nil {
			return demoSeed{}, err
		}
		if status == http.StatusConflict {
			// Registered by an earlier run; logging in works from any region.
			if _, err := c.do(ctx, u.Region, "POST", "/api/v1/auth/login", "", map[string]any{"email": u.Email, "password": DemoPassword}, &b); err != nil {
				return demoSeed{}, err
			}
			if b.AccessToken == "" {
				return demoSeed{}, fmt.Errorf("demo user %s exists with another password; remove .local-cluster to start over", u.Email)
			}
		} else {
			created++
		}
		if !b.User.EmailVerified {
			// Demo users are verified the way anyone is: by following the link mailed to them.
			if b, err = verifyDemoUser(ctx, c, u, b); err != nil {
				return demoSeed{}, err
			}
		}
		tokens[u.Email] = b
		if u.Profile != nil {
			if _, err := c.do(ctx, u.Region, "PUT", "/api/v1/users/profile", b.AccessToken, u.Profile, nil); err != nil {
				return demoSeed{}, err
			}
		}
		if len(u.Jobs) > 0 {
			var mine struct {
				Items []json.RawMessage `json:"items"`
			}
			if _, err := c.do(ctx, u.Region, "GET", "/api/v1/jobs/", b.AccessToken, nil, &mine); err != nil {
				return demoSeed{}, err
			}
			if len(mine.Items) == 0 {
				for _, j := range u.Jobs {
					if _, err := c.do(ctx, u.Region, "POST", "/api/v1/jobs/", b.AccessToken, j, nil); err != nil {
						return demoSeed{}, err
					}
				}
			}
		}
	}
	fmt.Fprintf(out, "demo data: %d users created now (%d in all), password %q, in %s\n", created, len(users), DemoPassword, time.Since(began).Round(100*time.Millisecond))
	freelancers, jobs := demoMarketCounts()
	fmt.Fprintf(out, "demo market: %d freelancers with profiles and %d jobs, %d and %d in each region (generated from seed %d; emails @%s)\n",
		freelancers, jobs, freelancers/len(demoMarketRegions), jobs/len(demoMarketRegions), demoMarketSeed, demoMarketDomain)
	return seedHiring(ctx, c, tokens, out)
}

// The demo's hiring: Alice's two jobs.
const (
	demoShardingJob = "PostgreSQL sharding expert"
	demoReactJob    = "React dashboard for SREs"
)

// How long, and how often, the seeding waits for what the outbox carries between regions (a proposal's
// reference row on the job owner's shard, a contract's on the freelancer's): moments, normally.
const (
	demoOutboxWait = 30 * time.Second
	demoOutboxPoll = 200 * time.Millisecond
)

// demoSeed is what the hiring of the demo made or found: the IDs the summary's examples name.
type demoSeed struct {
	AliceID, BrunoID, ChitraID       string
	ShardingJob, ReactJob            string
	Contract                         string
	BrunoProposal, ChitraProposal    string
	ContractStatus, ChitraPropStatus string
}

// demoContract is the part of a contract the seeding reads.
type demoContract struct {
	ID           string `json:"id"`
	JobID        string `json:"job_id"`
	ProposalID   string `json:"proposal_id"`
	FreelancerID string `json:"freelancer_id"`
	Status       string `json:"status"`
}

// demoProposal is the part of a proposal the seeding reads.
type demoProposal struct {
	ID     string `json:"id"`
	JobID  string `json:"job_id"`
	Status string `json:"status"`
}

// seedHiring runs a hiring across regions through the API: Bruno (eu-west) applies to Alice's (us-east)
// sharding job, Alice accepts and completes the contract, and both review each other, each in their own
// region; Chitra (ap-south) applies to Alice's React job and her proposal stays pending. A contract
// from an earlier run is kept (found among Alice's contracts), and so are reviews already posted.
func seedHiring(ctx context.Context, c *demoClient, tokens map[string]demoBundle, out io.Writer) (demoSeed, error) {
	alice, bruno, chitra := tokens["alice@demo.8thdegree.test"], tokens["bruno@demo.8thdegree.test"], tokens["chitra@demo.8thdegree.test"]
	seed := demoSeed{AliceID: alice.User.ID, BrunoID: bruno.User.ID, ChitraID: chitra.User.ID}
	var jobs struct {
		Items []struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		} `json:"items"`
	}
	if _, err := c.do(ctx, "us-east", "GET", "/api/v1/jobs/?limit=100", alice.AccessToken, nil, &jobs); err != nil {
		return seed, err
	}
	for _, j := range jobs.Items {
		switch j.Title {
		case demoShardingJob:
			seed.ShardingJob = j.ID
		case demoReactJob:
			seed.ReactJob = j.ID
		}
	}
	if seed.ShardingJob == "" || seed.ReactJob == "" {
		return seed, fmt.Errorf("demo: alice has no jobs %q and %q; remove .local-cluster to start over", demoShardingJob, demoReactJob)
	}

	// Chitra's proposal first: its reference row travels to Alice's shard while the rest goes on.
	chitraProp, err := demoApply(ctx, c, "ap-south", chitra.AccessToken, seed.ReactJob, map[string]any{
		"cover_letter": "<p>I build dashboards over JSON APIs in <b>React</b> and TypeScript; a first version in a week.</p>", "rate": 2400})
	if err != nil {
		return seed, err
	}
	seed.ChitraProposal, seed.ChitraPropStatus = chitraProp.ID, chitraProp.Status

	contract, err := demoFindContract(ctx, c, alice.AccessToken, seed.ShardingJob, bruno.User.ID)
	if err != nil {
		return seed, err
	}
	made := contract.ID == ""
	if made {
		p, err := demoApply(ctx, c, "eu-west", bruno.AccessToken, seed.ShardingJob, map[string]any{
			"cover_letter": "<p>I have sharded PostgreSQL for two marketplaces; I would start with the keyspace and the moves.</p>", "rate": 7000})
		if err != nil {
			return seed, err
		}
		if contract, err = demoAccept(ctx, c, alice.AccessToken, p.ID); err != nil {
			return seed, err
		}
	}
	seed.Contract, seed.BrunoProposal = contract.ID, contract.ProposalID
	switch contract.Status {
	case "active":
		// The contract lives on Alice's shard: the request goes to her region (the router would send it there anyway).
		if _, err := c.do(ctx, "us-east", "POST", "/api/v1/contracts/"+contract.ID+"/complete", alice.AccessToken, nil, &contract); err != nil {
			return seed, err
		}
	case "completed":
	default:
		return seed, fmt.Errorf("demo: contract %s is %s; remove .local-cluster to start over", contract.ID, contract.Status)
	}
	seed.ContractStatus = contract.Status

	// Each review is sent to its author's region, which reads its side of the contract on its own shard.
	posted := 0
	for _, r := range []struct {
		region, token, comment string
	}{
		{"us-east", alice.AccessToken, "Sharded our database without a minute of downtime."},
		{"eu-west", bruno.AccessToken, "Clear requirements, quick answers, paid on time."},
	} {
		ok, err := demoReview(ctx, c, r.region, r.token, map[string]any{"contract_id": contract.ID, "rating": 5, "comment": r.comment})
		if err != nil {
			return seed, err
		}
		if ok {
			posted++
		}
	}
	state := "kept from an earlier run"
	if made {
		state = "created now"
	}
	fmt.Fprintf(out, "demo hiring: contract %s (Alice hired Bruno for %q) %s, %s; reviews posted now: %d of 2; Chitra's proposal %s is %s\n",
		contract.ID, demoShardingJob, state, contract.Status, posted, seed.ChitraProposal, seed.ChitraPropStatus)
	return seed, nil
}

// demoApply sends a proposal for job as the freelancer of token, in their region. A live proposal of an
// earlier run (409 proposal_exists) is looked up among the freelancer's proposals and returned instead.
func demoApply(ctx context.Context, c *demoClient, region, token, job string, body map[string]any) (demoProposal, error) {
	var p demoProposal
	status, code, err := c.call(ctx, region, "POST", "/api/v1/jobs/"+job+"/proposals", token, body, &p)
	switch {
	case err != nil:
		return p, err
	case status != http.StatusConflict:
		return p, nil
	case code != "proposal_exists":
		return p, fmt.Errorf("demo: applying to %s in %s: 409 %s", job, region, code)
	}
	var mine struct {
		Items []demoProposal `json:"items"`
	}
	if _, err := c.do(ctx, region, "GET", "/api/v1/proposals/?limit=100", token, nil, &mine); err != nil {
		return p, err
	}
	for _, p := range mine.Items {
		if p.JobID == job && (p.Status == "pending" || p.Status == "accepted") {
			return p, nil
		}
	}
	return p, fmt.Errorf("demo: %s answers proposal_exists for %s but lists no live proposal for it", region, job)
}

// demoFindContract returns the contract between Alice (token) and freelancer for job, from Alice's
// contracts (an ID of "" if there is none).
func demoFindContract(ctx context.Context, c *demoClient, token, job, freelancer string) (demoContract, error) {
	var page struct {
		Items []demoContract `json:"items"`
	}
	if _, err := c.do(ctx, "us-east", "GET", "/api/v1/contracts/?limit=100", token, nil, &page); err != nil {
		return demoContract{}, err
	}
	for _, ct := range page.Items {
		if ct.JobID == job && ct.FreelancerID == freelancer {
			return ct, nil
		}
	}
	return demoContract{}, nil
}

// demoAccept accepts proposal as Alice (token), in her region. Her shard learns of the proposal
// through the outbox: until its reference row arrives the proposal is a 404 there, so it tries again
// for a bounded time.
func demoAccept(ctx context.Context, c *demoClient, token, proposal string) (demoContract, error) {
	deadline := time.Now().Add(demoOutboxWait)
	for {
		var ct demoContract
		status, code, err := c.call(ctx, "us-east", "POST", "/api/v1/proposals/"+proposal+"/accept", token, nil, &ct)
		var de *demoError
		switch {
		case err == nil && status == http.StatusConflict:
			return ct, fmt.Errorf("demo: accepting %s: 409 %s", proposal, code)
		case err == nil:
			return ct, nil
		case !errors.As(err, &de) || de.status != http.StatusNotFound:
			return ct, err
		case time.Now().After(deadline):
			return ct, fmt.Errorf("demo: proposal %s has not reached Alice's shard after %s: %w", proposal, demoOutboxWait, err)
		}
		if err := demoPause(ctx); err != nil {
			return ct, err
		}
	}
}

// demoReview posts a review (body: contract_id, rating, comment) in its author's region; ok is false
// when the author had reviewed the contract already (409 already_reviewed). The freelancer's side of
// the contract is a reference row that the outbox brings from the client's shard, and a review reads
// it whichever party writes it (the freelancer's own side, or the reviewee's side re-checked in the
// freelancer's region): until the contract reaches it the review answers 403 not_a_party, and until
// its completion does, 409 contract_not_completed. Both are tried again for a bounded time.
func demoReview(ctx context.Context, c *demoClient, region, token string, body map[string]any) (ok bool, err error) {
	deadline := time.Now().Add(demoOutboxWait)
	for {
		status, code, err := c.call(ctx, region, "POST", "/api/v1/reviews/", token, body, nil)
		var de *demoError
		switch {
		case err == nil && status == http.StatusConflict && code == "already_reviewed":
			return false, nil
		case err == nil && status == http.StatusConflict && code != "contract_not_completed":
			return false, fmt.Errorf("demo: reviewing contract %v in %s: 409 %s", body["contract_id"], region, code)
		case err == nil && status != http.StatusConflict:
			return true, nil
		case err != nil && (!errors.As(err, &de) || de.status != http.StatusForbidden || de.code != "not_a_party"):
			return false, err
		case time.Now().After(deadline):
			return false, fmt.Errorf("demo: contract %v is not completed on the reviewer's side in %s after %s (%d %s)",
				body["contract_id"], region, demoOutboxWait, status, code)
		}
		if err := demoPause(ctx); err != nil {
			return false, err
		}
	}
}

// demoPause waits one poll interval, or until ctx ends.
func demoPause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(demoOutboxPoll):
		return nil
	}
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
