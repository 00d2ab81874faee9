package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/deploy/local"
	mfixture "github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

var pinIDLine = regexp.MustCompile(`(?m)^pin ([0-9]{8}_[0-9]{6}_[0-9a-f]{4}): user`)

// TestPinCommands drives a pin through the command line: usage errors and refusals (nothing
// changed), a crash injected with MERIDIAN_FAULT inside the cutover, the listing, resume, an abort
// refused after the flip, and a clean residency audit. No API node is registered, which
// shardmgr/fleet counts as every node holding the version.
func TestPinCommands(t *testing.T) {
	f := mfixture.New(t, mfixture.Options{Shards: true, Consul: true})
	env := map[string]string{
		"CONSUL_HTTP_ADDR":       f.ConsulAddr,
		"CONSUL_HTTP_TOKEN_FILE": f.ConsulAgent.TokenFile(local.RoleShardmgr),
		"MERIDIAN_TOPOLOGY_KEY":  f.Key,
		"MERIDIAN_LOCK_KEY":      "meridian-test/" + f.Prefix + "/lock",
		"MERIDIAN_MOVES_PREFIX":  "meridian-test/" + f.Prefix + "/moves/",
		"MERIDIAN_PINS_PREFIX":   "meridian-test/" + f.Prefix + "/pins/",
	}
	t.Cleanup(func() { _, _ = f.Consul.KV().DeleteTree("meridian-test/"+f.Prefix+"/", nil) })
	ctx := context.Background()
	src, err := pgxpool.New(ctx, f.DSN["us-east-1"])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	k := shardkey.KeyspaceID(0x2000_1234_5678_9abc)
	user, err := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, `INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, 'p@example.test', 'p@example.test', 'P', 'client', 'us-east')`, k.Bytes(), user.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, `INSERT INTO core.jobs (ksid, id, owner_id, title) VALUES ($1, $2, $3, 'a job')`, k.Bytes(), make([]byte, 20), user.Bytes()); err != nil {
		t.Fatal(err)
	}
	version := func() uint64 {
		topo, _, err := f.Store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return topo.Version
	}
	v0 := version()
	ghost, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, k+1)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pin"}, ExitUsage, "give a user ID"},
		{[]string{"pin", user.String()}, ExitUsage, "--region"},
		{[]string{"pin", "job_065x", "--region", "eu-west", "--yes"}, ExitUsage, "user ID"},
		{[]string{"pin", user.String(), "--region", "mars", "--yes"}, ExitUsage, "not a region"},
		{[]string{"pin", user.String(), "--region", "eu-west"}, ExitUsage, "--yes"},
		{[]string{"pin", "--resume", "x", "--region", "eu-west"}, ExitUsage, "--region goes with a user ID"},
		{[]string{"pin", user.String(), "--region", "eu-west", "--yes", "--max-pause", "3s"}, ExitUsage, "below the nodes' write hold"},
		{[]string{"pin", user.String(), "--region", "us-east", "--yes"}, ExitError, "already lives in region us-east"},
		{[]string{"pin", ghost.String(), "--region", "eu-west", "--yes"}, ExitError, "no user"},
		{[]string{"pin", "--resume", "20990101_000000_0000"}, ExitError, "no such pin"},
	} {
		r := shardmgr(t, env, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, r.code, r.stderr, c.code, c.want)
		}
		if c.code == ExitError && strings.HasPrefix(c.args[1], "usr_") && !strings.Contains(r.stderr, "nothing was changed") {
			t.Errorf("%v: a refusal that does not say nothing changed: %q", c.args, r.stderr)
		}
	}
	if v := version(); v != v0 {
		t.Fatalf("the refused commands wrote the topology (version %d, was %d)", v, v0)
	}

	// A crash inside the cutover, the relocation frozen.
	var exited []int
	var out, errb bytes.Buffer
	faultEnv := map[string]string{"MERIDIAN_FAULT": "freeze"}
	for k, v := range env {
		faultEnv[k] = v
	}
	code := Run(ctx, []string{"pin", user.String(), "--region", "eu-west", "--yes"}, Env{
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return faultEnv[k] }, Exit: func(c int) { exited = append(exited, c) },
	})
	if len(exited) != 1 || exited[0] != ExitError || code != ExitError || !strings.Contains(errb.String(), "MERIDIAN_FAULT=freeze") {
		t.Fatalf("pin with MERIDIAN_FAULT=freeze: exit %d, Exit calls %v, stderr %q", code, exited, errb.String())
	}
	m := pinIDLine.FindStringSubmatch(out.String())
	if m == nil || !strings.HasPrefix(out.String(), "pin "+m[1]) {
		t.Fatalf("the pin's ID is not printed first:\n%s", out.String())
	}
	id := m[1]
	if r := shardmgr(t, env, "topology", "show"); !strings.Contains(r.stdout, "frozen (a pin's cutover)") {
		t.Errorf("topology show during the crashed cutover:\n%s", r.stdout)
	}
	if r := shardmgr(t, env, "pins"); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "us-east/us-east-1 → eu-west/") {
		t.Fatalf("pins after the crash: %+v", r)
	}
	if r := shardmgr(t, env, "moves"); r.code != 0 || !strings.Contains(r.stdout, "pin "+id+" of user "+user.String()) {
		t.Errorf("moves does not mention the unfinished pin:\n%s", r.stdout)
	}
	if r := shardmgr(t, env, "pin", user.String(), "--region", "ap-south", "--yes"); r.code != ExitError || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("a second pin of the user while one is unfinished: %+v", r)
	}

	r := shardmgr(t, env, "pin", "--resume", id)
	if r.code != 0 || !strings.Contains(r.stdout, "done") || !strings.Contains(r.stdout, "write pause") || !strings.Contains(r.stdout, "residency.pin") {
		t.Fatalf("resume: %+v", r)
	}
	t.Logf("pin --resume %s:\n%s", id, r.stdout)
	if r := shardmgr(t, env, "pins"); r.code != 0 || !strings.Contains(r.stdout, "no pin running") {
		t.Fatalf("pins after the pin: %+v", r)
	}
	r = shardmgr(t, env, "-o", "json", "pins", "--all")
	var listed struct {
		Pins []struct {
			ID, Status, Step string
			To               string             `json:"to_ksid"`
			TargetRegion     string             `json:"target_region"`
			WritePauseMS     float64            `json:"write_pause_ms"`
			RowsCopied       map[string]float64 `json:"rows_copied"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || r.code != 0 {
		t.Fatalf("pins --all -o json: %v %+v", err, r)
	}
	want := k.WithRegion(0x40).String()
	if len(listed.Pins) != 1 || listed.Pins[0].ID != id || listed.Pins[0].Status != "done" || listed.Pins[0].To != want || listed.Pins[0].WritePauseMS <= 0 ||
		listed.Pins[0].RowsCopied["auth.users"] != 1 || listed.Pins[0].RowsCopied["core.jobs"] != 1 {
		t.Fatalf("pins --all -o json: %s", r.stdout)
	}
	if r := shardmgr(t, env, "pin", "--abort", id, "--yes"); r.code != ExitError || !strings.Contains(r.stderr, "only go forward") {
		t.Fatalf("abort after the pin: %+v", r)
	}
	if r := shardmgr(t, env, "pin", user.String(), "--region", "eu-west", "--yes"); r.code != ExitError || !strings.Contains(r.stderr, "already lives in region eu-west") {
		t.Fatalf("pinning the pinned user again to its region: %+v", r)
	}
	var n int
	if err := src.QueryRow(ctx, "SELECT count(*) FROM auth.users").Scan(&n); err != nil || n != 0 {
		t.Fatalf("source has %d users (%v), want 0", n, err)
	}
	if r := shardmgr(t, env, "residency", "audit"); r.code != 0 {
		t.Fatalf("residency audit after the pin: %+v", r)
	}
}
