package local

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ProcessConfig describes one of Meridian's own long-running programs (an API node, an edge router)
// started detached, with its output in a log file and its pid in a pid file, so it outlives the caller.
type ProcessConfig struct {
	// Name identifies the process in messages and names its files (<Dir>/<Name>.pid, .log).
	Name string
	// Bin is the program; Args its arguments; Env is added to the caller's environment.
	Bin  string
	Args []string
	Env  []string
	// Dir holds the pid and log files and is the working folder.
	Dir string
	// ReadyURL is polled until it answers 200.
	ReadyURL string
	// StartTimeout bounds the wait for ReadyURL (default 60s).
	StartTimeout time.Duration
}

// Process is a started (or found running) program.
type Process struct {
	cfg ProcessConfig
	pid int
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.pid }

// LogFile is where its output goes.
func (p *Process) LogFile() string { return filepath.Join(p.cfg.Dir, p.cfg.Name+".log") }

func pidFileOf(cfg ProcessConfig) string { return filepath.Join(cfg.Dir, cfg.Name+".pid") }

// StartProcess starts cfg's program unless its pid file names a live instance that answers ReadyURL, in
// which case that one is reused: starting twice is safe.
func StartProcess(ctx context.Context, cfg ProcessConfig, log *slog.Logger) (*Process, error) {
	if cfg.Name == "" || cfg.Bin == "" || cfg.Dir == "" || cfg.ReadyURL == "" {
		return nil, invalid("process: Name, Bin, Dir and ReadyURL are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = time.Minute
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	p := &Process{cfg: cfg}
	if pid, err := readPidFile(pidFileOf(cfg)); err == nil && processIs(pid, filepath.Base(cfg.Bin)) {
		p.pid = pid
		if err := waitFor(ctx, 5*time.Second, 100*time.Millisecond, p.ready); err == nil {
			log.Info("reusing running process", "name", cfg.Name, "pid", pid)
			return p, nil
		}
		// Alive but not answering: replace it.
		_ = stopPid(ctx, pid, syscall.SIGTERM, 10*time.Second, nil)
	}
	logf, err := os.OpenFile(p.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	offset := fileSize(p.LogFile())
	cmd := exec.Command(cfg.Bin, cfg.Args...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start: %w", cfg.Name, err)
	}
	p.pid = cmd.Process.Pid
	if err := writeFileAtomic(pidFileOf(cfg), []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	err = waitFor(ctx, cfg.StartTimeout, 100*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-done:
			return giveUp{fmt.Errorf("%s exited: %s", cfg.Name, cmd.ProcessState)}
		default:
		}
		return p.ready(ctx)
	})
	if err != nil {
		_ = stopPid(context.WithoutCancel(ctx), p.pid, syscall.SIGKILL, time.Second, done)
		return nil, fmt.Errorf("%s did not become ready: %w\n%s", cfg.Name, err, logSince(p.LogFile(), offset))
	}
	log.Info("started process", "name", cfg.Name, "pid", p.pid)
	return p, nil
}

func (p *Process) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.ReadyURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s answered %d", p.cfg.Name, p.cfg.ReadyURL, resp.StatusCode)
	}
	return nil
}

// Stop ends the process (SIGTERM, then SIGKILL after a grace period).
func (p *Process) Stop(ctx context.Context) error { return StopProcess(ctx, p.cfg) }

// StopProcess stops the process cfg's pid file names, if it is still that program. Idempotent.
func StopProcess(ctx context.Context, cfg ProcessConfig) error {
	pid, err := readPidFile(pidFileOf(cfg))
	if err != nil {
		return nil // never started, or already stopped
	}
	if processIs(pid, filepath.Base(cfg.Bin)) {
		if err := stopPid(ctx, pid, syscall.SIGTERM, 20*time.Second, nil); err != nil {
			return fmt.Errorf("%s: %w", cfg.Name, err)
		}
	}
	_ = os.Remove(pidFileOf(cfg))
	return nil
}
