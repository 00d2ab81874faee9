package local

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFreePortIsBindable(t *testing.T) {
	for range 5 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("FreePort returned %d but it cannot be bound: %v", port, err)
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			l.Close()
			t.Fatalf("FreePort returned %d but UDP cannot bind it: %v", port, err)
		}
		u.Close()
		l.Close()
	}
}

func TestPortFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if portFree("127.0.0.1", l.Addr().(*net.TCPAddr).Port) {
		t.Error("portFree reported a listening port as free")
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("our own process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if processAlive(cmd.Process.Pid) {
		t.Error("an exited, reaped process is alive")
	}
	if processAlive(0) || processAlive(-1) {
		t.Error("pid <= 0 is alive")
	}
}

func TestProcessAliveZombie(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }() // reaps the zombie; how it exited does not matter here
	// Until Wait reaps it, the exited child is a zombie: kill(0) succeeds, but it is dead.
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("an exited, unreaped child is still reported alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcessIs(t *testing.T) {
	if !processIs(os.Getpid(), filepath.Base(os.Args[0])) {
		t.Errorf("our process is not %q", filepath.Base(os.Args[0]))
	}
	if processIs(os.Getpid(), "no-such-program-name") {
		t.Error("our process matched an unrelated name")
	}
}

func TestStopPidEscalatesToKill(t *testing.T) {
	// A process that ignores SIGTERM must still be gone after the grace period.
	cmd := exec.Command("sh", "-c", "trap '' TERM; while :; do sleep 0.05; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	if err := stopPid(context.Background(), cmd.Process.Pid, 15, 200*time.Millisecond, done); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	default:
		t.Fatal("stopPid returned while the process still runs")
	}
}

func TestReadPidFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          int
		wantErr       bool
	}{
		{"plain", "1234\n", 1234, false},
		{"postmaster", "4321\n/data\n1700000000\n5433\n/tmp\n127.0.0.1\n  1 2\nready   \n", 4321, false},
		{"garbage", "abc\n", 0, true},
		{"zero", "0\n", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readPidFile(p)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("readPidFile = %d, %v; want %d, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestReadPostmasterPid(t *testing.T) {
	dir := t.TempDir()
	content := "4321\n/data\n1700000000\n5433\n/tmp/sock\n127.0.0.1\n  1 2\nready   \n"
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	st, ok := readPostmasterPid(dir)
	if !ok || st.pid != 4321 || st.port != 5433 || st.sockDir != "/tmp/sock" {
		t.Errorf("readPostmasterPid = %+v, %v", st, ok)
	}
	if _, ok := readPostmasterPid(t.TempDir()); ok {
		t.Error("a folder without postmaster.pid reported a running cluster")
	}
}

func TestReadConfPort(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          int
	}{
		{"redis", "# c\nport 6390\nbind 127.0.0.1\n", 6390},
		{"postgres", "max_connections = '200'\nport = '5544'\n", 5544},
		{"missing", "bind 127.0.0.1\n", 0},
		{"not a number", "port abc\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := readConfPort(p, "port"); got != tt.want {
				t.Errorf("readConfPort = %d, want %d", got, tt.want)
			}
		})
	}
	if got := readConfPort(filepath.Join(dir, "nope"), "port"); got != 0 {
		t.Errorf("missing file: got %d", got)
	}
}

func TestLogTailAndSince(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := logTail(p, 3), "line 97\nline 98\nline 99"; got != want {
		t.Errorf("logTail = %q, want %q", got, want)
	}
	off := fileSize(p)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("bind: Address already in use\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := logSince(p, off); !isPortClash(got) || strings.Contains(got, "line 99") {
		t.Errorf("logSince = %q", got)
	}
	if got := logTail(filepath.Join(t.TempDir(), "none"), 3); !strings.Contains(got, "no log") {
		t.Errorf("logTail of a missing file = %q", got)
	}
}

func TestWaitForStopsOnGiveUpAndContext(t *testing.T) {
	calls := 0
	sentinel := errors.New("dead")
	err := waitFor(context.Background(), time.Minute, time.Millisecond, func(context.Context) error {
		calls++
		return giveUp{sentinel}
	})
	if !errors.Is(err, sentinel) || calls != 1 {
		t.Errorf("giveUp: err %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = waitFor(ctx, time.Minute, time.Millisecond, func(context.Context) error { return errors.New("not yet") })
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	n := 0
	if err := waitFor(context.Background(), time.Minute, time.Millisecond, func(context.Context) error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("eventual success: %v after %d", err, n)
	}
}

func TestLockDirSerialises(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := lockDir(ctx, dir); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v", err)
	}
	unlock()
	unlock2, err := lockDir(context.Background(), dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestServerErrorNamesProcessPortAndLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.log")
	if err := os.WriteFile(p, []byte("FATAL: something broke\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := serverError("redis", "start", 6390, p, ErrNotReady)
	msg := err.Error()
	for _, want := range []string{"redis", "6390", "FATAL: something broke", p} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, ErrNotReady) {
		t.Error("ServerError does not unwrap to its cause")
	}
}
