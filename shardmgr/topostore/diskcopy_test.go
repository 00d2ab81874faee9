package topostore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestDiskCopyRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "topology.json")
	want := exampleAt(7)
	want.UpdatedAt = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := WriteDiskCopy(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDiskCopy(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 7 || !got.UpdatedAt.Equal(want.UpdatedAt) || len(got.Shards) != len(want.Shards) {
		t.Fatalf("round trip: got version %d updated %v with %d shards", got.Version, got.UpdatedAt, len(got.Shards))
	}
	// Rewriting leaves exactly one file: temp files are renamed, never left behind.
	if err := WriteDiskCopy(path, exampleAt(8)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only topology.json", names)
	}
}

func TestWriteDiskCopyRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	if err := WriteDiskCopy(path, exampleAt(1)); err != nil {
		t.Fatal(err)
	}
	bad := exampleAt(2)
	bad.Shards[0].Region = "nowhere"
	if err := WriteDiskCopy(path, bad); !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("WriteDiskCopy(invalid) = %v, want ErrInvalid", err)
	}
	got, err := ReadDiskCopy(path)
	if err != nil || got.Version != 1 {
		t.Fatalf("the previous copy must survive: %v, %v", got, err)
	}
}

func TestReadDiskCopyRejects(t *testing.T) {
	valid := encodeAt(t, 3)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty file", nil},
		{"torn write", valid[:len(valid)/2]},
		{"not JSON", []byte("\x00\x01garbage")},
		{"unknown field", []byte(`{"version": 1, "password": "x"}`)},
		{"valid JSON, invalid topology", []byte(`{"version": 1, "regions": [], "shards": [], "keyranges": []}`)},
		{"trailing data", append(append([]byte{}, valid...), []byte(` {"version": 2}`)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "topology.json")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadDiskCopy(path)
			if !errors.Is(err, ErrBadDiskCopy) || !errors.Is(err, topology.ErrInvalid) {
				t.Fatalf("ReadDiskCopy = %v, want ErrBadDiskCopy and topology.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	_, err := ReadDiskCopy(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrBadDiskCopy) {
		t.Errorf("missing file: %v, want fs.ErrNotExist only", err)
	}
}

// FuzzReadDiskCopy: whatever bytes are on disk, ReadDiskCopy either returns a document that validates
// or an error wrapping ErrBadDiskCopy; it never panics.
func FuzzReadDiskCopy(f *testing.F) {
	f.Add(encodeAt(f, 1))
	f.Add([]byte(`{"version": 1}`))
	f.Add([]byte(`{"version": 18446744073709551615, "regions": null}`))
	f.Add([]byte(``))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "topology.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadDiskCopy(path)
		if err != nil {
			if !errors.Is(err, ErrBadDiskCopy) {
				t.Fatalf("error %v does not wrap ErrBadDiskCopy", err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted a document that does not validate: %v", err)
		}
	})
}

// TestWatcherDiskFallbackConsulUnreachable starts a watcher whose Consul is down (nothing listens on
// its port) with a good disk copy: it serves the disk copy.
func TestWatcherDiskFallbackConsulUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	if err := WriteDiskCopy(path, exampleAt(4)); err != nil {
		t.Fatal(err)
	}
	logs := newLogs(t)
	w := newUnitWatcher(t, WatcherConfig{CachePath: path, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: logs.logger()})
	stop := runWatcher(t, w)
	defer stop()
	waitReady(t, w)
	if w.Source() != SourceDisk || w.Current().Version != 4 {
		t.Fatalf("serving %q version %d, want the disk copy (version 4)", w.Source(), w.Current().Version)
	}
	logs.waitLog(t, "failures=3") // it keeps retrying Consul
	if w.Source() != SourceDisk {
		t.Fatalf("source changed to %q with Consul down", w.Source())
	}
}

// TestWatcherCorruptDiskCopy: with Consul down and a corrupt disk copy the watcher serves nothing,
// says why (naming the file), and is not Ready.
func TestWatcherCorruptDiskCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	if err := os.WriteFile(path, []byte(`{"version": 3, "regions": [{"name": "us-east"`), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := newLogs(t)
	w := newUnitWatcher(t, WatcherConfig{CachePath: path, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: logs.logger()})
	stop := runWatcher(t, w)
	defer stop()
	logs.waitLog(t, "the disk copy is rejected")
	if !strings.Contains(logs.String(), path) {
		t.Errorf("log does not name the disk copy %s:\n%s", path, logs.String())
	}
	logs.waitLog(t, "failures=2") // still retrying Consul after rejecting the disk copy
	if cur := w.Current(); cur != nil {
		t.Fatalf("serving version %d from a corrupt disk copy", cur.Version)
	}
	select {
	case <-w.Ready():
		t.Fatal("Ready closed with nothing to serve")
	default:
	}
}

// runWatcher runs w until the returned stop is called; stop waits for Run to return nil.
func runWatcher(t testing.TB, w *Watcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}
}

func waitReady(t testing.TB, w *Watcher) {
	t.Helper()
	select {
	case <-w.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("watcher never became ready")
	}
}
