package topostore

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// These tests drive the watcher's decisions directly, with no Consul: what Consul returned goes in,
// what is in service comes out. The loop against a real agent is tested in watcher_test.go.

func exampleAt(version uint64) *topology.Topology {
	t := topology.Example()
	t.Version = version
	return t
}

func encodeAt(t testing.TB, version uint64) []byte {
	t.Helper()
	data, err := exampleAt(version).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// deadAddr returns a loopback address nothing listens on, so reads fail at once with "connection
// refused", like an agent that is down.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// logBuffer collects a logger's output so a test can wait for an event the watcher only logs.
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

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

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

// waitLog waits for substr in the log; the deadline only bounds a failing test.
func (l *logBuffer) waitLog(t testing.TB, substr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q; log:\n%s", substr, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newUnitWatcher(t *testing.T, cfg WatcherConfig) *Watcher {
	t.Helper()
	client, err := api.NewClient(&api.Config{Address: deadAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWatcherApply(t *testing.T) {
	garbage := []byte(`{"version": 9, "regions": [`)
	invalid := []byte(`{"version": 9, "regions": [], "shards": [], "keyranges": []}`)
	v3other := exampleAt(3)
	v3other.Shards[0].Conn.Port = 25432

	type step struct {
		name        string
		pair        *api.KVPair // nil: the key is absent
		wantChanged bool
		wantVersion uint64 // 0: nothing in service
	}
	pair := func(idx uint64, v []byte) *api.KVPair { return &api.KVPair{Key: "k", ModifyIndex: idx, Value: v} }
	steps := []step{
		{"key absent before any document", nil, false, 0},
		{"garbage before any document", pair(5, garbage), false, 0},
		{"first good version", pair(10, encodeAt(t, 1)), true, 1},
		{"same ModifyIndex again (timeout wake-up)", pair(10, encodeAt(t, 1)), false, 1},
		{"next version", pair(11, encodeAt(t, 2)), true, 2},
		{"garbage is skipped", pair(12, garbage), false, 2},
		{"valid JSON but invalid topology is skipped", pair(13, invalid), false, 2},
		{"older version is ignored", pair(14, encodeAt(t, 1)), false, 2},
		{"key deleted: last good copy stays", nil, false, 2},
		{"recreated at version 1: still older", pair(20, encodeAt(t, 1)), false, 2},
		{"newer version after all that", pair(21, encodeAt(t, 3)), true, 3},
		{"same version, other content: ignored", pair(22, mustEncode(t, v3other)), false, 3},
		{"index went backwards, same document re-read", pair(21, encodeAt(t, 3)), false, 3},
		{"version jump is fine", pair(30, encodeAt(t, 7)), true, 7},
	}

	w := newUnitWatcher(t, WatcherConfig{})
	ch, cancel := w.Subscribe(len(steps))
	defer cancel()
	var delivered []uint64
	for _, s := range steps {
		got := w.apply(s.pair)
		if got != s.wantChanged {
			t.Errorf("%s: changed = %v, want %v", s.name, got, s.wantChanged)
		}
		var v uint64
		if cur := w.Current(); cur != nil {
			v = cur.Version
		}
		if v != s.wantVersion {
			t.Errorf("%s: version in service = %d, want %d", s.name, v, s.wantVersion)
		}
		if s.wantChanged {
			select {
			case d := <-ch:
				delivered = append(delivered, d.Version)
			default:
				t.Errorf("%s: subscriber got nothing", s.name)
			}
		}
	}
	select {
	case d := <-ch:
		t.Errorf("subscriber got an extra version %d", d.Version)
	default:
	}
	if want := []uint64{1, 2, 3, 7}; !slices.Equal(delivered, want) {
		t.Errorf("delivered %v, want %v", delivered, want)
	}
	if w.Source() != SourceConsul {
		t.Errorf("Source() = %q, want %q", w.Source(), SourceConsul)
	}
}

func mustEncode(t testing.TB, topo *topology.Topology) []byte {
	t.Helper()
	data, err := topo.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestWatcherDiskThenConsul(t *testing.T) {
	tests := []struct {
		name          string
		consulVersion uint64
		wantSource    string
		wantVersion   uint64
		wantPublished bool
	}{
		{"consul confirms the disk copy", 5, SourceConsul, 5, false},
		{"consul is newer", 6, SourceConsul, 6, true},
		{"consul is older: the disk copy keeps serving", 4, SourceDisk, 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/topology.json"
			if err := WriteDiskCopy(path, exampleAt(5)); err != nil {
				t.Fatal(err)
			}
			w := newUnitWatcher(t, WatcherConfig{CachePath: path})
			w.loadDiskCopy("test")
			if w.Source() != SourceDisk || w.Current() == nil || w.Current().Version != 5 {
				t.Fatalf("after loading the disk copy: source %q, current %+v", w.Source(), w.Current())
			}
			select {
			case <-w.Ready():
			default:
				t.Fatal("Ready not closed after loading the disk copy")
			}
			ch, cancel := w.Subscribe(4)
			defer cancel()
			<-ch // the copy in service at subscription

			w.apply(&api.KVPair{Key: "k", ModifyIndex: 40, Value: encodeAt(t, tt.consulVersion)})
			if w.Source() != tt.wantSource || w.Current().Version != tt.wantVersion {
				t.Errorf("source %q version %d, want %q %d", w.Source(), w.Current().Version, tt.wantSource, tt.wantVersion)
			}
			select {
			case got := <-ch:
				if !tt.wantPublished || got.Version != tt.wantVersion {
					t.Errorf("published version %d, want published=%v", got.Version, tt.wantPublished)
				}
			default:
				if tt.wantPublished {
					t.Error("new version not published")
				}
			}
			onDisk, err := ReadDiskCopy(path)
			if err != nil {
				t.Fatal(err)
			}
			if onDisk.Version != tt.wantVersion {
				t.Errorf("disk copy version %d, want %d", onDisk.Version, tt.wantVersion)
			}
		})
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	tests := []struct {
		buf  int
		want []uint64
	}{
		{0, []uint64{10}},
		{1, []uint64{10}},
		{3, []uint64{8, 9, 10}},
		{20, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	}
	for _, tt := range tests {
		w := newUnitWatcher(t, WatcherConfig{})
		ch, cancel := w.Subscribe(tt.buf)
		// Nobody reads while ten versions arrive: the loop must not block.
		for v := uint64(1); v <= 10; v++ {
			w.apply(&api.KVPair{Key: "k", ModifyIndex: v, Value: encodeAt(t, v)})
		}
		cancel()
		var got []uint64
		for topo := range ch { // cancel closed the channel; pending values remain readable
			got = append(got, topo.Version)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("buf %d: got %v, want %v", tt.buf, got, tt.want)
		}
		// A second cancel is harmless, and publishing after it sends nothing on the closed channel.
		cancel()
		w.apply(&api.KVPair{Key: "k", ModifyIndex: 11, Value: encodeAt(t, 11)})
	}
}

func TestSubscribeStartsWithCurrentAndClosesWithRun(t *testing.T) {
	w := newUnitWatcher(t, WatcherConfig{})
	w.apply(&api.KVPair{Key: "k", ModifyIndex: 3, Value: encodeAt(t, 4)})
	ch, cancel := w.Subscribe(1)
	defer cancel()
	if got := <-ch; got.Version != 4 {
		t.Fatalf("first value %d, want the copy in service (4)", got.Version)
	}
	w.closeSubs()
	if _, ok := <-ch; ok {
		t.Fatal("channel still open after Run ended")
	}
	late, _ := w.Subscribe(1)
	if got, ok := <-late; !ok || got.Version != 4 {
		t.Fatalf("late subscriber: got %v %v, want the copy in service then close", got, ok)
	}
	if _, ok := <-late; ok {
		t.Fatal("late subscriber's channel not closed")
	}
}

func TestNextWaitIndex(t *testing.T) {
	tests := []struct {
		name      string
		prev, got uint64
		want      uint64
	}{
		{"first read", 0, 42, 42},
		{"advances", 42, 50, 50},
		{"unchanged (timeout)", 50, 50, 50},
		{"went backwards: restart", 50, 7, 0},
		{"zero from the agent: never wait on 0", 0, 0, 1},
		{"backwards to zero: restart", 9, 0, 0},
	}
	for _, tt := range tests {
		if got := nextWaitIndex(tt.prev, tt.got); got != tt.want {
			t.Errorf("%s: nextWaitIndex(%d, %d) = %d, want %d", tt.name, tt.prev, tt.got, got, tt.want)
		}
	}
}

func TestJittered(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	tests := []struct {
		attempt int
		ceiling time.Duration // the un-jittered delay; the result lies in [ceiling/2, ceiling]
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{5, 1600 * time.Millisecond},
		{6, 2 * time.Second},
		{60, 2 * time.Second}, // no overflow with many failures
	}
	for _, tt := range tests {
		for range 100 {
			d := jittered(lo, hi, tt.attempt)
			if d < tt.ceiling/2 || d > tt.ceiling {
				t.Fatalf("attempt %d: %v outside [%v, %v]", tt.attempt, d, tt.ceiling/2, tt.ceiling)
			}
		}
	}
	if d := jittered(0, 0, 3); d != 0 {
		t.Errorf("zero bounds: %v", d)
	}
}

func TestWatcherConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     WatcherConfig
		wantErr string // substring naming the field; "" for valid
	}{
		{"zero value takes defaults", WatcherConfig{}, ""},
		{"wait time over Consul's cap", WatcherConfig{WaitTime: 11 * time.Minute}, "WaitTime"},
		{"negative wait time", WatcherConfig{WaitTime: -time.Second}, "WaitTime"},
		{"negative min backoff", WatcherConfig{MinBackoff: -1}, "MinBackoff"},
		{"max below min", WatcherConfig{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{"min above default max is fine when max unset", WatcherConfig{MinBackoff: time.Minute}, ""},
		{"negative min interval", WatcherConfig{MinInterval: -1}, "MinInterval"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.wantErr)
		}
	}
	if _, err := NewWatcher(nil, WatcherConfig{}); err == nil {
		t.Error("NewWatcher(nil client) succeeded")
	}
}

func TestEncodeRefusesTooLarge(t *testing.T) {
	topo := topology.Example()
	for i := range 20000 {
		// Users of us-east (0x20) relocated to eu-west (0x40).
		from := shardkey.KeyspaceID(uint64(0x20)<<56 | uint64(i+1))
		to := shardkey.KeyspaceID(uint64(0x40)<<56 | uint64(i+1))
		topo.Relocations = append(topo.Relocations, topology.Relocation{From: from, To: to})
	}
	_, err := encode(topo)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("encode of a %d-relocation document: %v, want ErrTooLarge", len(topo.Relocations), err)
	}
}
