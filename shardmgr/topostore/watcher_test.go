package topostore_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// patience bounds how long a test waits for something that should happen within milliseconds. It is
// not an assertion about speed: it only turns a hang into a failure that says what never happened.
const patience = 60 * time.Second

// logBuffer collects a watcher's log so a test can wait for an event that is only logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// newLogs returns a log buffer that is printed if the test fails: the watcher's log is the story of
// what it saw.
func newLogs(t testing.TB) *logBuffer {
	l := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watcher log:\n%s", l.String())
		}
	})
	return l
}

// count returns how often substr occurs in the log.
func (l *logBuffer) count(substr string) int { return strings.Count(l.String(), substr) }

// waitFor polls cond until it holds; what names the condition in the failure.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startWatcher runs a watcher until the test ends.
func startWatcher(t testing.TB, c *api.Client, cfg topostore.WatcherConfig) *topostore.Watcher {
	t.Helper()
	// Fast retries so that outage tests move quickly; production keeps the defaults.
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	w, err := topostore.NewWatcher(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
	return w
}

func waitReady(t testing.TB, w *topostore.Watcher) {
	t.Helper()
	select {
	case <-w.Ready():
	case <-time.After(patience):
		t.Fatal("watcher never became ready")
	}
}

func waitVersion(t testing.TB, w *topostore.Watcher, version uint64) {
	t.Helper()
	waitFor(t, "watcher serving version "+strconv.FormatUint(version, 10), func() bool {
		cur := w.Current()
		return cur != nil && cur.Version >= version
	})
	if v := w.Current().Version; v != version {
		t.Fatalf("watcher serves version %d, want %d", v, version)
	}
}

// receive reads one value from ch, failing the test if none comes.
func receive(t testing.TB, ch <-chan *topology.Topology) *topology.Topology {
	t.Helper()
	select {
	case topo, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return topo
	case <-time.After(patience):
		t.Fatal("no version delivered")
		return nil
	}
}

// TestWatcherDelivery: three watchers follow one key. Paced updates each reach every watcher, in
// order; a burst of updates may be coalesced but every subscriber sees ascending versions ending
// with the last one.
func TestWatcherDelivery(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	key := uniqueKey(t)
	s := topostore.NewStore(c, key)
	topo := example(1)
	idx, err := s.Create(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}

	const watchers = 3
	subs := make([]<-chan *topology.Topology, watchers)
	ws := make([]*topostore.Watcher, watchers)
	caches := make([]string, watchers)
	for i := range watchers {
		caches[i] = filepath.Join(t.TempDir(), "topology.json")
		ws[i] = startWatcher(t, c, topostore.WatcherConfig{Key: key, CachePath: caches[i]})
		ch, cancel := ws[i].Subscribe(64)
		t.Cleanup(cancel)
		subs[i] = ch
	}
	for i, w := range ws {
		waitReady(t, w)
		if got := receive(t, subs[i]); got.Version != 1 {
			t.Fatalf("watcher %d: first version %d, want 1", i, got.Version)
		}
		if w.Source() != topostore.SourceConsul {
			t.Fatalf("watcher %d: source %q", i, w.Source())
		}
	}

	// Paced: the next update is written only once every watcher has the previous one.
	const paced = 20
	for n := range paced {
		topo.Shards[0].Conn.MaxConns = int32(n + 1)
		if idx, err = s.Update(ctx, topo, idx); err != nil {
			t.Fatal(err)
		}
		for i := range watchers {
			got := receive(t, subs[i])
			if got.Version != topo.Version || got.Shards[0].Conn.MaxConns != int32(n+1) {
				t.Fatalf("watcher %d: got version %d (max_conns %d), want %d (%d)", i, got.Version, got.Shards[0].Conn.MaxConns, topo.Version, n+1)
			}
		}
	}

	// Burst: written back to back.
	const burst = 30
	for range burst {
		if idx, err = s.Update(ctx, topo, idx); err != nil {
			t.Fatal(err)
		}
	}
	last := topo.Version
	for i := range watchers {
		prev := uint64(1 + paced)
		for prev < last {
			got := receive(t, subs[i])
			if got.Version <= prev {
				t.Fatalf("watcher %d: version %d after %d: not ascending", i, got.Version, prev)
			}
			prev = got.Version
		}
		if v := ws[i].Current().Version; v != last {
			t.Fatalf("watcher %d: Current() = %d, want %d", i, v, last)
		}
	}

	// Each watcher's disk copy follows what it serves; the write comes right after delivery.
	for i, cache := range caches {
		waitFor(t, "disk copy "+strconv.Itoa(i)+" at the last version", func() bool {
			d, err := topostore.ReadDiskCopy(cache)
			return err == nil && d.Version == last
		})
	}
}

// TestWatcherSkipsBadDocuments: documents written raw to the key that do not decode or validate are
// skipped and the last good copy keeps serving; the next good version is taken.
func TestWatcherSkipsBadDocuments(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	key := uniqueKey(t)
	s := topostore.NewStore(c, key)
	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	logs := newLogs(t)
	cache := filepath.Join(t.TempDir(), "topology.json")
	w := startWatcher(t, c, topostore.WatcherConfig{Key: key, CachePath: cache, Logger: logs.logger()})
	waitVersion(t, w, 1)

	bad := []string{
		`{"version": 2, "regions": [`,                                          // torn JSON
		`{"version": 3, "regions": [], "shards": [], "keyranges": []}`,         // no regions
		`{"version": 4, "regions": [], "shards": [], "keyranges": [], "x": 1}`, // unknown field
	}
	for i, doc := range bad {
		if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(doc)}, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "watcher logs the bad document", func() bool { return logs.count("skipping invalid topology document") == i+1 })
		if v := w.Current().Version; v != 1 || w.Source() != topostore.SourceConsul {
			t.Fatalf("after bad document %d: serving version %d from %s", i, v, w.Source())
		}
	}
	onDisk, err := topostore.ReadDiskCopy(cache)
	if err != nil || onDisk.Version != 1 {
		t.Fatalf("disk copy after bad documents: %v, %v; want version 1", onDisk, err)
	}

	// A good successor of the last (bad, version 4) document is taken.
	p, _, err := c.KV().Get(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, example(4), p.ModifyIndex); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, w, 5)
	waitFor(t, "disk copy at version 5", func() bool {
		d, err := topostore.ReadDiskCopy(cache)
		return err == nil && d.Version == 5
	})
}

// TestWatcherKeyDeleted: deleting the key keeps the last good copy in service; recreating it at
// version 1 does not move the watcher backwards.
func TestWatcherKeyDeleted(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	key := uniqueKey(t)
	s := topostore.NewStore(c, key)
	topo := example(1)
	idx, err := s.Create(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = s.Update(ctx, topo, idx); err != nil {
		t.Fatal(err)
	}
	logs := newLogs(t)
	w := startWatcher(t, c, topostore.WatcherConfig{Key: key, Logger: logs.logger()})
	waitVersion(t, w, 2)

	if _, err := c.KV().Delete(key, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "watcher logs the deletion", func() bool { return logs.count("topology key is absent") == 1 })
	if v := w.Current().Version; v != 2 {
		t.Fatalf("after deletion: serving %d, want 2", v)
	}

	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "watcher ignores the recreated version 1", func() bool { return logs.count("ignoring an older topology version") == 1 })
	if v := w.Current().Version; v != 2 {
		t.Fatalf("after recreation at version 1: serving %d, want 2", v)
	}
}

// TestWatcherConsulDownAndBack stops the watcher's agent: the last copy keeps serving; after a restart
// a new update arrives.
func TestWatcherConsulDownAndBack(t *testing.T) {
	ctx := context.Background()
	agent := testenv.NewConsul(t)
	c := consulClient(t, agent)
	key := uniqueKey(t)
	s := topostore.NewStore(c, key)
	topo := example(1)
	idx, err := s.Create(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogs(t)
	w := startWatcher(t, c, topostore.WatcherConfig{Key: key, Logger: logs.logger()})
	ch, cancel := w.Subscribe(8)
	defer cancel()
	waitVersion(t, w, 1)
	receive(t, ch)

	if err := agent.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The point of failure: the watch's blocking query breaks and reads keep failing.
	waitFor(t, "two failed reads while the agent is down", func() bool {
		return logs.count("topology read from consul failed") >= 2
	})
	if cur := w.Current(); cur == nil || cur.Version != 1 || w.Source() != topostore.SourceConsul {
		t.Fatalf("with Consul down: serving %+v from %q, want version 1 from consul", cur, w.Source())
	}

	if err := agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err = s.Update(ctx, topo, idx); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ch); got.Version != 2 {
		t.Fatalf("after restart: delivered version %d, want 2", got.Version)
	}
	waitFor(t, "the watcher logs that Consul answers again", func() bool { return logs.count("consul answers again") >= 1 })
}

// TestWatcherDiskFallback: a watcher started while Consul is down serves the disk copy another
// watcher left, then switches to Consul when it comes back and follows new versions.
func TestWatcherDiskFallback(t *testing.T) {
	ctx := context.Background()
	agent := testenv.NewConsul(t)
	c := consulClient(t, agent)
	key := uniqueKey(t)
	cache := filepath.Join(t.TempDir(), "topology.json")
	s := topostore.NewStore(c, key)
	topo := example(1)
	idx, err := s.Create(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	if idx, err = s.Update(ctx, topo, idx); err != nil {
		t.Fatal(err)
	}

	// A first watcher leaves the disk copy behind, as a node that ran before.
	first, err := topostore.NewWatcher(c, topostore.WatcherConfig{Key: key, CachePath: cache})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopFirst := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(runCtx) }()
	waitFor(t, "disk copy at version 2", func() bool {
		d, err := topostore.ReadDiskCopy(cache)
		return err == nil && d.Version == 2
	})
	stopFirst()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}

	if err := agent.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	logs := newLogs(t)
	w := startWatcher(t, c, topostore.WatcherConfig{Key: key, CachePath: cache, Logger: logs.logger()})
	waitReady(t, w)
	if w.Source() != topostore.SourceDisk || w.Current().Version != 2 {
		t.Fatalf("with Consul down at start: serving version %d from %q, want 2 from disk", w.Current().Version, w.Source())
	}
	ch, cancel := w.Subscribe(8)
	defer cancel()
	if got := receive(t, ch); got.Version != 2 {
		t.Fatalf("subscription starts with %d, want 2", got.Version)
	}

	if err := agent.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "source switches to consul", func() bool { return w.Source() == topostore.SourceConsul })
	if v := w.Current().Version; v != 2 {
		t.Fatalf("after switching to consul: version %d, want 2", v)
	}
	if _, err = s.Update(ctx, topo, idx); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ch); got.Version != 3 {
		t.Fatalf("after Consul came back: delivered %d, want 3", got.Version)
	}
	waitFor(t, "disk copy at version 3", func() bool {
		d, err := topostore.ReadDiskCopy(cache)
		return err == nil && d.Version == 3
	})
}
