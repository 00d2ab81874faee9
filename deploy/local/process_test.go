package local

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildServer compiles a tiny HTTP server that answers 200 on /ready and exits on SIGTERM.
func buildServer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	src := `package main
import ("net/http"; "os")
func main() {
	http.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(os.Getenv("GREETING"))) })
	http.ListenAndServe(os.Args[1], nil)
}`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tinyserver\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tinyserver")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestStartProcessReuseAndStop(t *testing.T) {
	bin := buildServer(t)
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := ProcessConfig{Name: "tiny", Bin: bin, Args: []string{addr}, Env: []string{"GREETING=hi"}, Dir: t.TempDir(), ReadyURL: "http://" + addr + "/ready", StartTimeout: 20 * time.Second}
	ctx := context.Background()
	p, err := StartProcess(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = StopProcess(context.Background(), cfg) })
	again, err := StartProcess(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Pid() != p.Pid() {
		t.Fatalf("second start made a new process (%d, was %d)", again.Pid(), p.Pid())
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if processAlive(p.Pid()) {
		t.Fatal("process still alive after Stop")
	}
	if _, err := http.Get(cfg.ReadyURL); err == nil {
		t.Fatal("still answering after Stop")
	}
	if err := StopProcess(ctx, cfg); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

func TestStartProcessReportsAnEarlyExit(t *testing.T) {
	bin := buildServer(t)
	// An address it cannot listen on: it exits at once, and the error says so with its log.
	cfg := ProcessConfig{Name: "bad", Bin: bin, Args: []string{"not-an-address"}, Dir: t.TempDir(), ReadyURL: "http://127.0.0.1:1/ready", StartTimeout: 10 * time.Second}
	if _, err := StartProcess(context.Background(), cfg, nil); err == nil {
		t.Fatal("a process that exits was reported ready")
	}
	if _, err := StartProcess(context.Background(), ProcessConfig{Name: "x"}, nil); err == nil {
		t.Fatal("an incomplete config was accepted")
	}
}
