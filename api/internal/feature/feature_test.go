package feature_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/wire"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A write to a frozen keyrange, a read of it and a fan-out over its region wait for the cutover and
// then go to the keyrange's new owner.
func TestWriteShardWaitsForTheFlip(t *testing.T) {
	h := apitest.New(t, apitest.Options{})
	a := h.Nodes["us-east"].App
	k := shardkey.NewKeyspaceID(0x20, []byte("frozen-user")) // lands in 20-2080 or 2080-21
	before, err := a.WriteShard(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	// Freeze the keyrange that holds k.
	frozen := h.Topology.Clone()
	frozen.Version = 2
	idx := -1
	for i, kr := range frozen.KeyRanges {
		if kr.Range.Contains(k) {
			idx = i
		}
	}
	frozen.KeyRanges[idx].State = topology.Frozen
	if err := h.Pools.Apply(context.Background(), frozen); err != nil {
		t.Fatal(err)
	}
	// The flip: the keyrange moves to the other us-east shard's database (a new shard entry for it).
	flipped := frozen.Clone()
	flipped.Version = 3
	other := "us-east-1"
	if before.Shard == "us-east-1" {
		other = "us-east-2"
	}
	target, _ := flipped.Shard(other)
	target.Name = "us-east-3"
	flipped.Shards = append(flipped.Shards, target)
	flipped.KeyRanges[idx] = topology.Assignment{Range: flipped.KeyRanges[idx].Range, Shard: "us-east-3", State: topology.Serving}

	type result struct {
		r   shardpool.Routed
		err error
	}
	done := make(chan result, 2)
	go func() {
		r, err := a.WriteShard(context.Background(), k)
		done <- result{r, err}
	}()
	go func() {
		r, err := a.ReadShard(context.Background(), k)
		done <- result{r, err}
	}()
	fanout := make(chan shardpool.RegionView, 1)
	go func() {
		v, err := a.ReadRegion(context.Background())
		if err != nil {
			t.Error(err)
		}
		fanout <- v
	}()
	select {
	case res := <-done:
		t.Fatalf("a request for a frozen keyrange did not wait: %+v", res)
	case <-fanout:
		t.Fatal("a fan-out over a region with a frozen keyrange did not wait")
	case <-time.After(150 * time.Millisecond):
	}
	if err := h.Pools.Apply(context.Background(), flipped); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.r.Shard != "us-east-3" {
			t.Fatalf("a held request went to %s after the flip, want us-east-3", res.r.Shard)
		}
	}
	if v := <-fanout; v.Table.Version() != flipped.Version {
		t.Fatalf("the fan-out was released with version %d, want %d", v.Table.Version(), flipped.Version)
	}
}

func TestWriteShardGivesUpAfterFreezeWait(t *testing.T) {
	h := apitest.New(t, apitest.Options{})
	a := h.Nodes["eu-west"].App
	a.FreezeWait = 50 * time.Millisecond
	frozen := h.Topology.Clone()
	frozen.Version = 2
	for i := range frozen.KeyRanges {
		frozen.KeyRanges[i].State = topology.Frozen
	}
	if err := h.Pools.Apply(context.Background(), frozen); err != nil {
		t.Fatal(err)
	}
	_, err := a.WriteShard(context.Background(), shardkey.NewKeyspaceID(0x40, []byte("x")))
	if e := rest.Public(err); !errors.Is(err, shardpool.ErrFrozen) || e.Status != http.StatusServiceUnavailable || e.RetryAfter == 0 {
		t.Fatalf("want a 503 with Retry-After after FreezeWait, got %v", err)
	}
	_, err = a.ReadShard(context.Background(), shardkey.NewKeyspaceID(0x40, []byte("x")))
	if e := rest.Public(err); !errors.Is(err, shardpool.ErrFrozen) || e.Status != http.StatusServiceUnavailable || e.RetryAfter == 0 {
		t.Fatalf("read: want a 503 with Retry-After after FreezeWait, got %v", err)
	}
	_, err = a.ReadRegion(context.Background())
	if e := rest.Public(err); !errors.Is(err, shardpool.ErrFrozen) || e.Status != http.StatusServiceUnavailable || e.RetryAfter == 0 {
		t.Fatalf("fan-out: want a 503 with Retry-After after FreezeWait, got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.FreezeWait = time.Minute
	if _, err := a.WriteShard(ctx, shardkey.NewKeyspaceID(0x40, []byte("x"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled request kept waiting: %v", err)
	}
}

func TestRouteErrors(t *testing.T) {
	ctx := context.Background()
	h := apitest.New(t, apitest.Options{})
	a := h.Nodes["ap-south"].App
	_, err := a.ReadShard(ctx, shardkey.NewKeyspaceID(0x20, []byte("x")))
	var wr *shardpool.WrongRegionError
	e := rest.Public(err)
	if !errors.As(err, &wr) || wr.Region != "us-east" || e.Status != http.StatusMisdirectedRequest || e.Code != "wrong_region" ||
		e.Header.Get(wire.ReplayRegion) != "us-east" || !errors.Is(e, shardpool.ErrWrongRegion) {
		t.Fatalf("foreign ksid: %v", err)
	}
	_, err = a.ReadShard(ctx, shardkey.NewKeyspaceID(0x99, []byte("x")))
	if e := rest.Public(err); !errors.Is(err, topology.ErrNoShard) || e.Status != http.StatusNotFound {
		t.Fatalf("unknown region code: %v", err)
	}
}
