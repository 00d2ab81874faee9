package local

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalidConfig is wrapped by every Validate error; the message names the field.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrBinaryNotFound means a server binary is not installed where we looked; the message says
	// what to install or which script builds it.
	ErrBinaryNotFound = errors.New("binary not found")
	// ErrNotReady means a server did not become ready before its deadline.
	ErrNotReady = errors.New("server not ready")
	// ErrAlreadyRunning means a data folder's server is running, but not the way the config asks
	// (for example on another port), so it can be neither reused nor started a second time.
	ErrAlreadyRunning = errors.New("already running with other settings")
)

// ServerError says which server failed, on which port, and carries the tail of its log, because
// the cause of a failed start is nearly always in the log and nowhere else.
type ServerError struct {
	Process string // "postgres", "redis", "consul"
	Port    int
	Op      string // "start", "stop", "wait", ...
	LogFile string
	LogTail string
	Err     error
}

func (e *ServerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (port %d): %v", e.Process, e.Op, e.Port, e.Err)
	if e.LogFile != "" {
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", e.LogFile, strings.TrimRight(e.LogTail, "\n"))
	}
	return b.String()
}

func (e *ServerError) Unwrap() error { return e.Err }

// serverError builds a ServerError, reading the log tail now: later the log may have been rotated
// or the folder removed.
func serverError(process, op string, port int, logFile string, err error) error {
	return &ServerError{Process: process, Op: op, Port: port, LogFile: logFile, LogTail: logTail(logFile, 25), Err: err}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}
