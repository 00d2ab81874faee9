package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/e2e/cluster"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// BenchmarkE2ECutover measures the write pause of a move's cutover through real API nodes: two nodes
// of us-east (the cutover waits for both), clients rewriting their profiles through them directly,
// and 2*max(8, N) moves of 2040-2080 back and forth between us-east-1 and us-east-2 with
// shardmgr/move waiting on the nodes (shardmgr/fleet), half of them waiting for the nodes'
// registrations alone (the baseline, taking turns with the others under the same load). It reports the recorded pause (freeze written to flip written) at p50
// and p99, its parts (the freeze's wait for the nodes, the drain, the flip's write) and the freeze's
// own write and the nodes' apply of the flip after it, and the slowest client write overlapping
// each cutover, against client writes outside the cutovers as the baseline of the same run. A
// failed client request fails the benchmark.
//
//	go test -run '^$' -bench E2ECutover -benchtime 1x -timeout 30m ./e2e/
//
// (1x: 16 moves run in the one call; a larger N runs the function twice, first with N = 1.)
func BenchmarkE2ECutover(b *testing.B) {
	c := cluster.Start(b) // registration asks every region (the email directory)
	nodes := []string{c.Nodes["us-east"], c.StartNode(b, "us-east")}
	c.WaitPassing(b, "us-east", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cc, err := consul.NewClient(&consul.Config{Address: c.ConsulAddr})
	if err != nil {
		b.Fatal(err)
	}
	base := c.Key[:len(c.Key)-len("/topology")]
	lockKey, movesPrefix := base+"/lock", base+"/moves/"
	b.Cleanup(func() { _, _ = cc.KV().DeleteTree(movesPrefix, nil) })
	src, err := pgxpool.New(ctx, c.DSN[e2eSource])
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	// PostgreSQL's launcher starts at most one apply worker per wal_retrieve_retry_interval (5 s by
	// default): moves back to back are this benchmark's artefact, so the private server gets a
	// short one (as bench/move does). It costs the copy, not the pause.
	for _, q := range []string{"ALTER SYSTEM SET wal_retrieve_retry_interval = '100ms'", "SELECT pg_reload_conf()"} {
		if _, err := src.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	store := topostore.NewStore(cc, c.Key)
	if _, err := store.Modify(ctx, func(t *topology.Topology) error {
		for i, a := range t.KeyRanges {
			if a.Range == e2eWhole {
				t.KeyRanges[i].Range = shardkey.MustParseKeyRange("20-2040")
				t.KeyRanges = append(t.KeyRanges, topology.Assignment{Range: e2eMoved, Shard: a.Shard, State: topology.Serving})
				return nil
			}
		}
		return fmt.Errorf("no keyrange %s", e2eWhole)
	}); err != nil {
		b.Fatal(err)
	}

	// Four clients homed in the moved keyrange.
	hc := cluster.Client()
	var users []cluster.Registered
	for i := 0; len(users) < 4; i++ {
		if i == 200 {
			b.Fatalf("200 registrations gave %d users in %s", len(users), e2eMoved)
		}
		reg, err := cluster.Register(hc, nodes[i%2], fmt.Sprintf("cutover-%d-%d@e2e.test", i, time.Now().UnixNano()), "client", "us-east")
		if err != nil {
			b.Fatal(err)
		}
		if id, err := shardkey.ParseID(reg.User.ID); err == nil && e2eMoved.Contains(id.KeyspaceID()) {
			users = append(users, reg)
		}
	}
	type write struct {
		start, end time.Time
		err        error
	}
	var (
		mu     sync.Mutex
		writes []write
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for ui, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				w := write{start: time.Now()}
				// A profile rewritten in place: a write held by every cutover that does not grow
				// what each move copies.
				w.err = putJSON(hc, nodes[(ui+i)%2]+"/api/v1/users/profile", u.AccessToken, map[string]any{"headline": fmt.Sprintf("headline %d", i), "skills": []string{"go"}})
				w.end = time.Now()
				mu.Lock()
				writes = append(writes, w)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	// Two runners, taking turns by pairs of moves (there and back): one waits for the nodes as moves
	// do (their registrations, and asking them), the other for their registrations alone, the
	// baseline of the same run under the same load.
	newRunner := func(f move.FleetWaiter) *move.Runner {
		cfg := move.DefaultConfig()
		cfg.Consul, cfg.Topology, cfg.Fleet = cc, store, f
		cfg.Prefix, cfg.LockKey = movesPrefix, lockKey
		cfg.Poll = 20 * time.Millisecond
		cfg.DeletePause = time.Millisecond
		r, err := move.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	type window struct{ from, to time.Time }
	type series struct {
		name                                        string
		runner                                      *move.Runner
		pause, held, drain, flipW, freezeW, flipped []time.Duration
		windows                                     []window
		slowest                                     []time.Duration
	}
	modes := []*series{
		{name: "registrations and asking the nodes", runner: newRunner(move.ConsulFleet{Client: cc})},
		{name: "registrations only", runner: newRunner(move.ConsulFleet{Client: cc, RegistrationsOnly: true})},
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	moves := 2 * max(8, b.N)
	b.ResetTimer()
	for i := range moves {
		to := e2eTarget
		if i%2 == 1 {
			to = e2eSource
		}
		sr := modes[(i/2)%2]
		m, err := sr.runner.Start(ctx, e2eMoved, to)
		if err != nil {
			b.Fatalf("move %d to %s: %v", i, to, err)
		}
		sr.pause = append(sr.pause, ms(m.WritePauseMillis))
		if ct := m.Cutover; ct != nil {
			sr.held, sr.drain, sr.flipW = append(sr.held, ms(ct.NodesHeld)), append(sr.drain, ms(ct.Drain)), append(sr.flipW, ms(ct.FlipWrite))
			sr.freezeW, sr.flipped = append(sr.freezeW, ms(ct.FreezeWrite)), append(sr.flipped, ms(ct.NodesFlipped))
		}
		fr, _ := m.Timing(move.StepFreeze)
		fl, _ := m.Timing(move.StepFlip)
		sr.windows = append(sr.windows, window{fr.Started, fl.Finished})
	}
	b.StopTimer()
	close(stop)
	wg.Wait()

	var failed []write
	var outside []time.Duration
	for _, sr := range modes {
		sr.slowest = make([]time.Duration, len(sr.windows))
	}
	for _, w := range writes {
		if w.err != nil {
			failed = append(failed, w)
			continue
		}
		in := false
		for _, sr := range modes {
			for i, win := range sr.windows {
				if w.start.Before(win.to) && w.end.After(win.from) {
					sr.slowest[i] = max(sr.slowest[i], w.end.Sub(w.start))
					in = true
				}
			}
		}
		if !in {
			outside = append(outside, w.end.Sub(w.start))
		}
	}
	if len(failed) > 0 {
		b.Fatalf("%d of %d client writes failed; first: %v", len(failed), len(writes), failed[0].err)
	}
	report := func(name string, d []time.Duration) {
		b.ReportMetric(float64(quantile(d, 0.5).Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(quantile(d, 0.99).Microseconds())/1000, name+"-p99-ms")
	}
	report("pause", modes[0].pause)
	report("client-in-cutover", modes[0].slowest)
	report("baseline-pause", modes[1].pause)
	report("client-outside", outside)
	b.Logf("%d cutovers through 2 real nodes (%d each way of waiting), %d client writes, none failed; client writes outside the cutovers p50 %.1f ms, p99 %.1f ms",
		moves, moves/2, len(writes), float64(quantile(outside, 0.5).Microseconds())/1000, float64(quantile(outside, 0.99).Microseconds())/1000)
	for _, sr := range modes {
		b.Logf("waiting for the nodes' %s (%d cutovers):", sr.name, len(sr.pause))
		for _, p := range []struct {
			name string
			d    []time.Duration
		}{{"recorded pause", sr.pause}, {"  nodes held the freeze", sr.held}, {"  drain", sr.drain}, {"  flip written", sr.flipW},
			{"freeze written (before the pause)", sr.freezeW}, {"nodes applied the flip (after)", sr.flipped},
			{"slowest client write in each cutover", sr.slowest}} {
			b.Logf("  %-38s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms", p.name,
				float64(quantile(p.d, 0.5).Microseconds())/1000, float64(quantile(p.d, 0.99).Microseconds())/1000, float64(quantile(p.d, 1).Microseconds())/1000)
		}
	}
}

// putJSON PUTs body to url with the bearer token and wants a 2xx.
func putJSON(c *http.Client, url, token string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %d %s", url, resp.StatusCode, data)
	}
	return nil
}
