package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/cli"
)

// A pin across regions on real PostgreSQL and Consul, through real API nodes of both regions and
// two routers, under clients that write and read all along with the access tokens they got before
// the pin: no client request fails, every acknowledged write of the pinned user is in the new
// region exactly once and nothing of the user is left in the old one, the user's old IDs still
// read, login by email lands in the new region, and the residency audit is clean.
func TestE2EPinUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real API nodes and routers")
	}
	c := cluster.Start(t) // every region: the email directory spreads claims over all of them
	usRouter, _ := c.StartRouter(t, "us-east", nil)
	euRouter, _ := c.StartRouter(t, "eu-west", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := testenv.ConsulClient(t, c.ConsulAgent, local.RoleShardmgr)
	base := strings.TrimSuffix(c.Key, "/topology")
	lockKey, movesPrefix, pinsPrefix := base+"/lock", base+"/moves/", base+"/pins/"
	t.Cleanup(func() { _, _ = cc.KV().DeleteTree(pinsPrefix, nil) })
	pools := map[string]*pgxpool.Pool{}
	for name, dsn := range c.DSN {
		p, err := pgxpool.New(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pools[name] = p
	}
	shardmgr := func(args ...string) (int, string) {
		var out bytes.Buffer
		args = append(args, "--consul", c.ConsulAddr, "--key", c.Key, "--lock-key", lockKey, "--moves-prefix", movesPrefix, "--pins-prefix", pinsPrefix)
		code := cli.Run(ctx, args, cli.Env{Stdout: &out, Stderr: &out, Getenv: shardmgrEnv(c)})
		return code, out.String()
	}

	// Three us-east users under load; the first is pinned to eu-west.
	hc := cluster.Client()
	var users []*loadUser
	for i := range 3 {
		email := fmt.Sprintf("pin-%d-%d@e2e.test", i, time.Now().UnixNano())
		reg, err := c.RegisterVerified(hc, usRouter, email, "client", "us-east")
		if err != nil {
			t.Fatal(err)
		}
		id, err := shardkey.ParseID(reg.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, &loadUser{reg: reg, ksid: id.KeyspaceID(), moved: i == 0})
	}
	pinned := users[0]
	load := &moveLoad{routers: []string{usRouter, euRouter}, client: hc, stop: make(chan struct{})}
	// A job and a profile written before the pin: their IDs carry the old ksid.
	var oldJob struct {
		ID shardkey.ID `json:"id"`
	}
	if err := cluster.PostJSON(hc, usRouter+"/api/v1/jobs/", pinned.reg.AccessToken, map[string]any{"title": "Before the pin", "description": "old id", "currency": "USD", "remote": true}, &oldJob); err != nil {
		t.Fatal(err)
	}
	pinned.jobs = append(pinned.jobs, oldJob.ID)
	for _, u := range users {
		load.run(u, 5*time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)

	code, out := shardmgr("pin", pinned.reg.User.ID, "--region", "eu-west", "--yes", "-o", "json")
	time.Sleep(300 * time.Millisecond) // writes after the flip, in the new region
	close(load.stop)
	load.wg.Wait()
	if code != cli.ExitOK {
		t.Fatalf("shardmgr pin: exit %d: %s", code, out)
	}
	var pin struct {
		ID           string  `json:"id"`
		Status       string  `json:"status"`
		From         string  `json:"from_ksid"`
		To           string  `json:"to_ksid"`
		Source       string  `json:"source"`
		Target       string  `json:"target"`
		WritePauseMS float64 `json:"write_pause_ms"`
		Steps        []struct {
			Step     string    `json:"step"`
			Started  time.Time `json:"started"`
			Finished time.Time `json:"finished"`
			Millis   float64   `json:"ms"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &pin); err != nil {
		t.Fatalf("pin output: %v: %s", err, out)
	}
	if pin.Status != "done" || pin.From != pinned.ksid.String() {
		t.Fatalf("pin: %s", out)
	}
	newKsid, err := shardkey.ParseKeyspaceID(pin.To)
	if err != nil {
		t.Fatal(err)
	}

	// No client request failed.
	var failed []sample
	var pinnedWrites, inPause int
	var pauseLat time.Duration
	var freezeStart, flipEnd time.Time
	for _, st := range pin.Steps {
		switch st.Step {
		case "freeze":
			freezeStart = st.Started
		case "flip":
			flipEnd = st.Finished
		}
	}
	for _, s := range load.samples {
		if s.err != nil {
			failed = append(failed, s)
		}
		if s.moved && s.write {
			pinnedWrites++
			if s.start.Before(flipEnd) && s.end.After(freezeStart) {
				inPause++
				pauseLat = max(pauseLat, s.end.Sub(s.start))
			}
		}
	}
	for i, s := range failed {
		if i < 5 {
			t.Errorf("failed: %s at %s: %v", s.what, s.start.Format(time.StampMicro), s.err)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed", len(failed), len(load.samples))
	}
	if inPause == 0 {
		t.Errorf("no write of the pinned user overlapped the cutover (%s to %s): the hold was not exercised", freezeStart.Format(time.StampMicro), flipEnd.Format(time.StampMicro))
	}
	t.Logf("pin %s: %d requests, %d failed, %d writes of the pinned user (%d in the cutover, the slowest %s), write pause %.1f ms",
		pin.ID, len(load.samples), len(failed), pinnedWrites, inPause, pauseLat.Round(time.Millisecond), pin.WritePauseMS)
	for _, st := range pin.Steps {
		t.Logf("  %-9s %8.1f ms", st.Step, st.Millis)
	}

	// Every acknowledged job of the pinned user is on the target once under the new ksid and not
	// on the source; the profile holds the last acknowledged headline; other users stayed.
	for _, j := range pinned.jobs {
		var onTarget, onSource int
		if err := pools[pin.Target].QueryRow(ctx, "SELECT count(*) FROM core.jobs WHERE ksid = $1 AND id = $2", newKsid.Bytes(), j.Bytes()).Scan(&onTarget); err != nil {
			t.Fatal(err)
		}
		if err := pools[pin.Source].QueryRow(ctx, "SELECT count(*) FROM core.jobs WHERE id = $1", j.Bytes()).Scan(&onSource); err != nil {
			t.Fatal(err)
		}
		if onTarget != 1 || onSource != 0 {
			t.Errorf("acknowledged job %s: %d on the target, %d on the source", j, onTarget, onSource)
		}
	}
	var headline string
	if err := pools[pin.Target].QueryRow(ctx, "SELECT headline FROM core.profiles WHERE ksid = $1", newKsid.Bytes()).Scan(&headline); err != nil || headline != pinned.headline {
		t.Errorf("pinned profile headline %q (%v), want the last acknowledged %q", headline, err, pinned.headline)
	}
	tables, err := ksidTables(ctx, pools[pin.Source])
	if err != nil {
		t.Fatal(err)
	}
	for _, tab := range tables {
		var n int64
		if err := pools[pin.Source].QueryRow(ctx, "SELECT count(*) FROM "+tab+" WHERE ksid = $1", pinned.ksid.Bytes()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows of the pinned user left in %s on %s", n, tab, pin.Source)
		}
	}
	for _, u := range users[1:] {
		total := 0
		for _, sh := range []string{"us-east-1", "us-east-2"} {
			var n int
			if err := pools[sh].QueryRow(ctx, "SELECT count(*) FROM auth.users WHERE ksid = $1", u.ksid.Bytes()).Scan(&n); err != nil {
				t.Fatal(err)
			}
			total += n
		}
		if total != 1 {
			t.Errorf("a user that was not pinned (ksid %s): %d rows in us-east", u.ksid, total)
		}
	}

	// The old IDs and the old token still work, through either router.
	for _, r := range []string{usRouter, euRouter} {
		st, body, err := load.request(http.MethodGet, r+"/api/v1/jobs/"+oldJob.ID.String(), pinned.reg.AccessToken, nil)
		if err != nil || st != http.StatusOK {
			t.Errorf("GET the job made before the pin via %s: %d %s %v", r, st, body, err)
		}
		st, body, err = load.request(http.MethodGet, r+"/api/v1/users/"+pinned.reg.User.ID+"/profile", pinned.reg.AccessToken, nil)
		if err != nil || st != http.StatusOK {
			t.Errorf("GET the profile by the old user ID via %s: %d %s %v", r, st, body, err)
		}
		st, body, err = load.request(http.MethodPost, r+"/api/v1/jobs/", pinned.reg.AccessToken, map[string]any{"title": "After the pin", "currency": "USD", "remote": true})
		if err != nil || st != http.StatusCreated && st != http.StatusOK {
			t.Errorf("POST a job with the token from before the pin via %s: %d %s %v", r, st, body, err)
		}
	}

	// The refresh token from before the pin (its family ID carries the old ksid) still rotates.
	var refreshed struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := cluster.PostJSON(hc, usRouter+"/api/v1/auth/refresh", "", map[string]any{"refresh_token": pinned.reg.RefreshToken}, &refreshed); err != nil || refreshed.AccessToken == "" {
		t.Errorf("refresh with the token from before the pin: %v (%+v)", err, refreshed)
	} else if st, body, err := load.request(http.MethodGet, euRouter+"/api/v1/users/profile", refreshed.AccessToken, nil); err != nil || st != http.StatusOK {
		t.Errorf("GET profile with the refreshed token: %d %s %v", st, body, err)
	}

	// Login by email, through the router of the old region, lands in the new one.
	var login struct {
		User struct {
			ID     string `json:"id"`
			Region string `json:"region"`
		} `json:"user"`
		AccessToken string `json:"access_token"`
	}
	email := ""
	if err := pools[pin.Target].QueryRow(ctx, "SELECT email FROM auth.users WHERE ksid = $1", newKsid.Bytes()).Scan(&email); err != nil {
		t.Fatal(err)
	}
	if err := cluster.PostJSON(hc, usRouter+"/api/v1/auth/login", "", map[string]any{"email": email, "password": "benchmark password 1"}, &login); err != nil {
		t.Fatalf("login after the pin: %v", err)
	}
	if login.User.ID != pinned.reg.User.ID || login.User.Region != "eu-west" {
		t.Errorf("login after the pin: user %s in %s, want %s in eu-west", login.User.ID, login.User.Region, pinned.reg.User.ID)
	}
	if st, body, err := load.request(http.MethodGet, usRouter+"/api/v1/users/profile", login.AccessToken, nil); err != nil || st != http.StatusOK {
		t.Errorf("GET profile with the token of the new login: %d %s %v", st, body, err)
	}

	// The audit is clean, and the pin is listed.
	if code, out := shardmgr("residency", "audit"); code != cli.ExitOK {
		t.Errorf("residency audit after the pin: exit %d: %s", code, out)
	}
	if code, out := shardmgr("pins", "--all"); code != cli.ExitOK || !strings.Contains(out, pin.ID) || !strings.Contains(out, "done") {
		t.Errorf("shardmgr pins --all: exit %d: %s", code, out)
	}
	var audit int
	if err := pools[pin.Target].QueryRow(ctx, "SELECT count(*) FROM core.audit_log WHERE ksid = $1 AND action = 'residency.pin'", newKsid.Bytes()).Scan(&audit); err != nil || audit != 1 {
		t.Errorf("audit records of the pin: %d (%v)", audit, err)
	}
}
