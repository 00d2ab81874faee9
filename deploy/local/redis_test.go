package local

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisConfigValidate(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "redis-server")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := RedisConfig{Bin: bin, Dir: "/tmp/r", Port: 6390, Host: "127.0.0.1"}
	tests := []struct {
		name    string
		mutate  func(*RedisConfig)
		wantErr error
		field   string
	}{
		{"ok", func(*RedisConfig) {}, nil, ""},
		{"no dir", func(c *RedisConfig) { c.Dir = "" }, ErrInvalidConfig, "Dir"},
		{"bad port", func(c *RedisConfig) { c.Port = 65536 }, ErrInvalidConfig, "Port"},
		{"public host", func(c *RedisConfig) { c.Host = "10.0.0.1" }, ErrInvalidConfig, "Host"},
		{"no bin", func(c *RedisConfig) { c.Bin = "" }, ErrBinaryNotFound, "redis-server"},
		{"missing bin", func(c *RedisConfig) { c.Bin = "/nonexistent/redis-server" }, ErrBinaryNotFound, "redis-server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mutate(&c)
			err := c.Validate()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
}

func TestRedisLifecycle(t *testing.T) {
	integration(t)
	ctx := testCtx(t)
	cfg := DefaultRedisConfig(filepath.Join(t.TempDir(), "redis"), 0)
	if cfg.Bin == "" {
		t.Fatal("redis-server is not installed: run scripts/deps.sh")
	}
	began := time.Now()
	r, err := StartRedis(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartRedis took %s", time.Since(began))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })

	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer client.Close()
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v", got, err)
	}
	// Nothing is persisted: a cache must never be mistaken for a store.
	if got, err := client.ConfigGet(ctx, "save").Result(); err != nil || got["save"] != "" {
		t.Errorf("CONFIG GET save = %v, %v; want empty", got, err)
	}
	if got, err := client.ConfigGet(ctx, "appendonly").Result(); err != nil || got["appendonly"] != "no" {
		t.Errorf("CONFIG GET appendonly = %v, %v", got, err)
	}

	// A second start reuses the running server, keeping its data.
	again, err := StartRedis(ctx, DefaultRedisConfig(cfg.Dir, 0), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if again.Addr() != r.Addr() {
		t.Errorf("second start at %s, want reuse of %s", again.Addr(), r.Addr())
	}
	if got, err := client.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("after second start GET k = %q, %v", got, err)
	}
	other := DefaultRedisConfig(cfg.Dir, r.Port()+1)
	if _, err := StartRedis(ctx, other, testLogger(t)); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("start on another port while running: %v, want ErrAlreadyRunning", err)
	}

	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := StopRedisDir(ctx, cfg); err != nil {
		t.Fatalf("StopRedisDir on a stopped server: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("stopped server still accepts connections")
	}

	// Restarting keeps the address (Port 0 prefers the folder's previous port) and starts empty.
	restarted, err := StartRedis(ctx, DefaultRedisConfig(cfg.Dir, 0), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = restarted.Stop(context.Background()) }()
	if restarted.Addr() != r.Addr() {
		t.Errorf("restart moved %s to %s", r.Addr(), restarted.Addr())
	}
	if err := client.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("after restart GET k: %v, want redis.Nil (no persistence)", err)
	}
}

func TestRedisPortInUse(t *testing.T) {
	integration(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = StartRedis(testCtx(t), DefaultRedisConfig(t.TempDir(), port), testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("start on a taken port: %v", err)
	}
}
