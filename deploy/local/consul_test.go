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

	"github.com/hashicorp/consul/api"
)

func TestConsulConfigValidate(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "consul")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := ConsulConfig{Bin: bin, DataDir: "/tmp/c", DNSPort: -1, GRPCPort: -1, Datacenter: "us-east", NodeName: "node-1"}
	tests := []struct {
		name    string
		mutate  func(*ConsulConfig)
		wantErr error
		field   string
	}{
		{"ok", func(*ConsulConfig) {}, nil, ""},
		{"fixed ports", func(c *ConsulConfig) { c.HTTPPort, c.ServerPort, c.SerfLANPort = 18500, 18300, 18301 }, nil, ""},
		{"no data dir", func(c *ConsulConfig) { c.DataDir = "" }, ErrInvalidConfig, "DataDir"},
		{"http disabled", func(c *ConsulConfig) { c.HTTPPort = -1 }, ErrInvalidConfig, "HTTPPort"},
		{"server disabled", func(c *ConsulConfig) { c.ServerPort = -1 }, ErrInvalidConfig, "ServerPort"},
		{"bad dns", func(c *ConsulConfig) { c.DNSPort = -2 }, ErrInvalidConfig, "DNSPort"},
		{"huge grpc", func(c *ConsulConfig) { c.GRPCPort = 1 << 16 }, ErrInvalidConfig, "GRPCPort"},
		{"upper dc", func(c *ConsulConfig) { c.Datacenter = "US" }, ErrInvalidConfig, "Datacenter"},
		{"empty node", func(c *ConsulConfig) { c.NodeName = "" }, ErrInvalidConfig, "NodeName"},
		{"missing bin", func(c *ConsulConfig) { c.Bin = "/nonexistent/consul" }, ErrBinaryNotFound, "ensure-consul.sh"},
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

func TestConsulBinary(t *testing.T) {
	t.Run("CONSUL_BIN wins", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "my-consul")
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("CONSUL_BIN", bin)
		if got, err := ConsulBinary(); err != nil || got != bin {
			t.Errorf("ConsulBinary() = %q, %v; want %q", got, err, bin)
		}
	})
	t.Run("bad CONSUL_BIN is an error, not a fallback", func(t *testing.T) {
		t.Setenv("CONSUL_BIN", "/nonexistent/consul")
		if _, err := ConsulBinary(); !errors.Is(err, ErrBinaryNotFound) {
			t.Errorf("ConsulBinary() err = %v", err)
		}
	})
	t.Run("cache folder", func(t *testing.T) {
		cache := t.TempDir()
		bin := filepath.Join(cache, "consul-"+ConsulVersion, "consul")
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("CONSUL_BIN", "")
		t.Setenv("MERIDIAN_CACHE", cache)
		if got, err := ConsulBinary(); err != nil || got != bin {
			t.Errorf("ConsulBinary() = %q, %v; want %q", got, err, bin)
		}
	})
	t.Run("nothing names the script", func(t *testing.T) {
		t.Setenv("CONSUL_BIN", "")
		t.Setenv("MERIDIAN_CACHE", t.TempDir())
		t.Setenv("PATH", t.TempDir())
		_, err := ConsulBinary()
		if !errors.Is(err, ErrBinaryNotFound) || !strings.Contains(err.Error(), "scripts/ensure-consul.sh") {
			t.Errorf("ConsulBinary() err = %v", err)
		}
	})
}

func startTestConsul(t *testing.T, dir string) *Consul {
	t.Helper()
	cfg := DefaultConsulConfig(dir)
	if cfg.Bin == "" {
		_, err := ConsulBinary()
		t.Fatal(err)
	}
	began := time.Now()
	c, err := StartConsul(testCtx(t), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartConsul took %s", time.Since(began))
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

func consulKV(t *testing.T, c *Consul) *api.KV {
	t.Helper()
	client, err := c.Client(RoleManagement)
	if err != nil {
		t.Fatal(err)
	}
	return client.KV()
}

func TestConsulLifecycle(t *testing.T) {
	integration(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "consul")
	c := startTestConsul(t, dir)
	cfg := c.Config()
	if cfg.DNSPort != -1 || cfg.GRPCPort != -1 || cfg.HTTPPort == 0 || cfg.ServerPort == 0 || cfg.SerfLANPort == 0 {
		t.Fatalf("resolved ports %+v", cfg)
	}
	if !strings.HasPrefix(c.HTTPAddr(), "127.0.0.1:") {
		t.Errorf("HTTPAddr = %q", c.HTTPAddr())
	}

	kv := consulKV(t, c)
	if _, err := kv.Put(&api.KVPair{Key: "meridian/topology", Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}

	// A second start reuses the running agent.
	again, err := StartConsul(ctx, DefaultConsulConfig(dir), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if again.HTTPAddr() != c.HTTPAddr() {
		t.Errorf("second start at %s, want reuse of %s", again.HTTPAddr(), c.HTTPAddr())
	}

	// Restart: down, then back on the same address with the KV data kept.
	addr := c.HTTPAddr()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kv.Get("meridian/topology", nil); err == nil {
		t.Fatal("KV read succeeded with the agent stopped")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	began := time.Now()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart (warm) took %s", time.Since(began))
	if c.HTTPAddr() != addr {
		t.Errorf("restart moved the agent from %s to %s", addr, c.HTTPAddr())
	}
	pair, _, err := kv.Get("meridian/topology", nil)
	if err != nil || pair == nil || string(pair.Value) != "v1" {
		t.Fatalf("after restart: %+v, %v; want v1", pair, err)
	}

	// Restart of a running agent works too (stop then start), while other goroutines read its
	// address (run with -race to check the locking).
	stopReading := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stopReading:
				return
			default:
				if c.HTTPAddr() != addr || c.Config().HTTPPort == 0 {
					t.Error("address changed during Restart")
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()
	err = c.Restart(ctx)
	close(stopReading)
	<-readerDone
	if err != nil {
		t.Fatal(err)
	}
	if pair, _, err := kv.Get("meridian/topology", nil); err != nil || pair == nil || string(pair.Value) != "v1" {
		t.Fatalf("after second restart: %+v, %v", pair, err)
	}

	// StopConsulDir finds the agent from its folder alone.
	if err := StopConsulDir(ctx, ConsulConfig{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("stopped agent still accepts connections")
	}
	if err := StopConsulDir(ctx, ConsulConfig{DataDir: dir}); err != nil {
		t.Fatalf("StopConsulDir on a stopped agent: %v", err)
	}
}

func TestConsulTwoAgentsAreIndependent(t *testing.T) {
	integration(t)
	a := startTestConsul(t, filepath.Join(t.TempDir(), "a"))
	b := startTestConsul(t, filepath.Join(t.TempDir(), "b"))
	if _, err := consulKV(t, a).Put(&api.KVPair{Key: "only-in-a", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	pair, _, err := consulKV(t, b).Get("only-in-a", nil)
	if err != nil || pair != nil {
		t.Errorf("agent b sees agent a's key: %+v, %v", pair, err)
	}
}

func TestConsulStartFailsWithLog(t *testing.T) {
	// An agent that exits at once must fail the start quickly, with its output in the error.
	bin := filepath.Join(t.TempDir(), "consul")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'boom: bad config' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConsulConfig(filepath.Join(t.TempDir(), "c"))
	cfg.Bin = bin
	_, err := StartConsul(testCtx(t), cfg, testLogger(t))
	var se *ServerError
	if !errors.As(err, &se) || se.Process != "consul" || !strings.Contains(se.LogTail, "boom: bad config") {
		t.Fatalf("StartConsul with a failing agent: %v", err)
	}
	if !strings.Contains(err.Error(), "exited") {
		t.Errorf("error does not say the agent exited: %v", err)
	}
}
