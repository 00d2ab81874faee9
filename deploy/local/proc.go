package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FreePort returns a loopback port that is free for both TCP and UDP right now. Serf needs both on
// the same number, and checking both costs nothing for the servers that need only TCP. Another
// process can still take the port before the caller binds it; starters retry with fresh ports
// when a port they picked themselves turns out to be taken.
func FreePort() (int, error) {
	var lastErr error
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, fmt.Errorf("free port: no port free for both tcp and udp: %w", lastErr)
}

// portFree reports whether host:port can be bound for TCP now.
func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// readPidFile returns the pid on the first line of path (PostgreSQL's postmaster.pid has more lines).
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad pid %q", path, line)
	}
	return pid, nil
}

// processAlive reports whether pid is a live process. A zombie is dead: the reaper of a daemon we
// did not start may be slow (or absent in a container), and waiting for it would hang Stop.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// No procfs: kill(0) is all we can know.
		return !errors.Is(err, os.ErrNotExist) || !dirExists("/proc/self")
	}
	// The state follows the command name, which is in parentheses and may itself hold ") ".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		switch stat[i+2] {
		case 'Z', 'X', 'x':
			return false
		}
	}
	return true
}

// processIs reports whether the live process pid looks like the named program. Pid files outlive
// crashes and pids are reused, so before we signal a pid read from a file we check that it is
// still the server and not some unrelated process that inherited the number.
func processIs(pid int, name string) bool {
	if !processAlive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return !dirExists("/proc/self") // no procfs: trust the pid file
	}
	return bytes.Contains(cmdline, []byte(name))
}

// stopPid sends SIGTERM (or sig) to pid and waits until it is gone; after grace it sends SIGKILL.
// done, when not nil, is closed by whoever reaps the process (the starter's cmd.Wait) and is the
// exact signal of exit; otherwise we poll.
func stopPid(ctx context.Context, pid int, sig syscall.Signal, grace time.Duration, done <-chan struct{}) error {
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	gone := func() bool {
		if done != nil {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}
		return !processAlive(pid)
	}
	killed := false
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !gone() {
		if !killed && time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = true
			deadline = time.Now().Add(10 * time.Second)
		} else if killed && time.Now().After(deadline) {
			return fmt.Errorf("process %d still alive 10s after SIGKILL", pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// waitFor calls probe until it returns nil, ctx ends or timeout passes, and returns the last probe
// error so that a timeout says what was still wrong.
func waitFor(ctx context.Context, timeout, interval time.Duration, probe func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		var fatal giveUp
		if errors.As(last, &fatal) {
			return fatal.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w, limit %s): last error: %w", ErrNotReady, ctx.Err(), timeout, last)
		case <-time.After(interval):
		}
	}
}

// giveUp wraps a probe error that no amount of waiting will fix (the process died).
type giveUp struct{ err error }

func (g giveUp) Error() string { return g.err.Error() }
func (g giveUp) Unwrap() error { return g.err }

// logTail returns the last n lines of a log file, or a note saying why there are none.
func logTail(path string, n int) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// absDir makes dir absolute and creates it with perm if missing.
func absDir(dir string, perm os.FileMode) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, perm); err != nil {
		return "", err
	}
	return abs, nil
}

// writeFileAtomic replaces path so that a reader (a concurrent Start on the same folder) never
// sees half a config file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// deadlineOr returns ctx bounded by d unless ctx already ends sooner.
func deadlineOr(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// lockDir takes an exclusive flock on the folder itself, so that two processes starting or stopping
// the same server (two `up` at once, `up` racing `down`) take turns instead of both running initdb
// or both picking ports. Locking the folder's own descriptor adds no file to it, which matters
// because initdb insists on an empty folder.
func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: another process holds it: %w", dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fileSize returns the size of path, or 0. Starters note a log's size before starting a server so
// that they can read what this start wrote, not what an earlier run left.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince returns what was appended to path after offset (at most its last 16 KiB).
func logSince(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size()-offset > 16<<10 {
		offset = st.Size() - 16<<10
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// isPortClash reports whether a start log says the port was taken.
func isPortClash(log string) bool {
	return strings.Contains(log, "already in use") || strings.Contains(log, "address in use")
}

// pickPort returns want when it is set, else the port the folder used last time when it is still
// free (so that a server keeps its address across down/up), else a free port. auto reports
// whether the port was chosen here, so that a clash may be retried with another.
func pickPort(want, previous int, host string) (port int, auto bool, err error) {
	if want != 0 {
		return want, false, nil
	}
	if previous > 0 && portFree(host, previous) {
		return previous, true, nil
	}
	port, err = FreePort()
	return port, true, err
}
