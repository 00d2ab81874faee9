package shardpool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// These tests need no server: pools connect lazily, so the example topology applies without PostgreSQL
// and routing never touches a connection.

// lazyManager returns a manager following the example topology.
func lazyManager(t *testing.T) (*Manager, *topology.Topology) {
	t.Helper()
	m := newManager(t)
	topo := topology.Example()
	if err := m.Apply(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	return m, topo
}

// withState returns a copy of topo, one version on, with the keyrange that holds k in state st.
func withState(t *testing.T, topo *topology.Topology, k shardkey.KeyspaceID, st topology.State) *topology.Topology {
	t.Helper()
	next := topo.Clone()
	next.Version++
	next.KeyRanges[rangeOf(t, next, k)].State = st
	return next
}

func rangeOf(t *testing.T, topo *topology.Topology, k shardkey.KeyspaceID) int {
	t.Helper()
	for i, kr := range topo.KeyRanges {
		if kr.Range.Contains(k) {
			return i
		}
	}
	t.Fatalf("no keyrange holds %s", k)
	return -1
}

// flipped returns topo, one version on, with k's keyrange given to a new shard us-east-3 and serving.
func flipped(t *testing.T, topo *topology.Topology, k shardkey.KeyspaceID) *topology.Topology {
	t.Helper()
	next := topo.Clone()
	next.Version++
	i := rangeOf(t, next, k)
	target, _ := next.Shard(next.KeyRanges[i].Shard)
	target.Name = "us-east-3"
	target.Conn.Database += "_target"
	next.Shards = append(next.Shards, target)
	next.KeyRanges[i] = topology.Assignment{Range: next.KeyRanges[i].Range, Shard: "us-east-3", State: topology.Serving}
	return next
}

type held struct {
	r   Routed
	err error
}

// holdWrite starts a WriteShard and checks that it is still waiting a moment later.
func holdWrite(t *testing.T, ctx context.Context, m *Manager, k shardkey.KeyspaceID, maxHold time.Duration) <-chan held {
	t.Helper()
	done := make(chan held, 1)
	go func() {
		r, err := m.WriteShard(ctx, k, "us-east", maxHold)
		done <- held{r, err}
	}()
	select {
	case h := <-done:
		t.Fatalf("a write to a frozen keyrange was not held: %+v", h)
	case <-time.After(50 * time.Millisecond):
	}
	return done
}

func TestReadShardAndWriteShardRouteInTheirRegion(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	k := shardkey.NewKeyspaceID(0x20, []byte("user"))
	if _, err := m.ReadShard(ctx, k, "us-east", time.Second); !errors.Is(err, ErrNoTopology) {
		t.Fatalf("ReadShard before Apply: %v", err)
	}
	if _, err := m.WriteShard(ctx, k, "us-east", time.Second); !errors.Is(err, ErrNoTopology) {
		t.Fatalf("WriteShard before Apply: %v", err)
	}
	m, topo := lazyManager(t)
	want := topo.KeyRanges[rangeOf(t, topo, k)].Shard
	for name, route := range map[string]func() (Routed, error){
		"read":  func() (Routed, error) { return m.ReadShard(ctx, k, "us-east", time.Second) },
		"write": func() (Routed, error) { return m.WriteShard(ctx, k, "us-east", time.Second) },
	} {
		r, err := route()
		if err != nil || r.Shard != want || r.Region != "us-east" || r.Pool == nil || r.Frozen() {
			t.Fatalf("%s: %+v, %v; want shard %s", name, r, err, want)
		}
	}

	// Another region's data names the region that holds it, for the replay hint.
	_, err := m.ReadShard(ctx, k, "eu-west", time.Second)
	var wr *WrongRegionError
	if !errors.As(err, &wr) || !errors.Is(err, ErrWrongRegion) || wr.Region != "us-east" || wr.Want != "eu-west" || wr.KeyspaceID != k {
		t.Fatalf("foreign ksid: %v", err)
	}
	// A frozen keyrange of another region is not held: it is not this node's to wait for.
	if err := m.Apply(ctx, withState(t, topo, k, topology.Frozen)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteShard(ctx, k, "eu-west", time.Minute); !errors.As(err, &wr) || wr.Region != "us-east" {
		t.Fatalf("foreign frozen ksid: %v", err)
	}
	if _, err := m.ReadShard(ctx, shardkey.NewKeyspaceID(0x99, []byte("x")), "us-east", time.Second); !errors.Is(err, topology.ErrNoShard) {
		t.Fatalf("unknown region code: %v", err)
	}
	// Reads of a frozen keyrange are held as writes are: with no hold allowed, refused at once.
	if r, err := m.ReadShard(ctx, k, "us-east", 0); !errors.Is(err, ErrFrozen) || r.Shard != want || !r.Frozen() {
		t.Fatalf("read of a frozen keyrange: %+v, %v", r, err)
	}
	if _, err := m.ReadShard(ctx, k, "eu-west", time.Minute); !errors.As(err, &wr) || wr.Region != "us-east" {
		t.Fatalf("foreign frozen ksid read: %v", err)
	}
}

func TestWriteShardHoldReleasedByTheFlip(t *testing.T) {
	ctx := context.Background()
	m, topo := lazyManager(t)
	k := shardkey.NewKeyspaceID(0x20, []byte("frozen-user"))
	frozen := withState(t, topo, k, topology.Frozen)
	if err := m.Apply(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	done := holdWrite(t, ctx, m, k, time.Minute)
	// A topology that leaves the keyrange frozen (another keyrange changes) wakes the write, which
	// routes again and goes back to waiting.
	other := frozen.Clone()
	other.Version++
	other.KeyRanges[(rangeOf(t, other, k)+2)%len(other.KeyRanges)].State = topology.Moving
	if err := m.Apply(ctx, other); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-done:
		t.Fatalf("a write returned while its keyrange was still frozen: %+v", h)
	case <-time.After(50 * time.Millisecond):
	}
	if err := m.Apply(ctx, flipped(t, other, k)); err != nil {
		t.Fatal(err)
	}
	h := <-done
	if h.err != nil || h.r.Shard != "us-east-3" || h.r.Frozen() {
		t.Fatalf("after the flip the write went to %+v, %v; want us-east-3", h.r, h.err)
	}
	if target, err := m.Shard("us-east-3"); err != nil || h.r.Pool == nil || h.r.Pool != target.Pool {
		t.Fatal("the released write did not get the new owner's pool")
	}
}

func TestWriteShardHoldReleasedByAnAbort(t *testing.T) {
	ctx := context.Background()
	m, topo := lazyManager(t)
	k := shardkey.NewKeyspaceID(0x20, []byte("aborted-move"))
	before, err := m.WriteShard(ctx, k, "us-east", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	frozen := withState(t, topo, k, topology.Frozen)
	if err := m.Apply(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	done := holdWrite(t, ctx, m, k, time.Minute)
	if err := m.Apply(ctx, withState(t, frozen, k, topology.Serving)); err != nil {
		t.Fatal(err)
	}
	h := <-done
	if h.err != nil || h.r.Shard != before.Shard || h.r.Pool != before.Pool || h.r.Frozen() {
		t.Fatalf("after the abort the write went to %+v, %v; want %s", h.r, h.err, before.Shard)
	}
}

func TestWriteShardHoldEnds(t *testing.T) {
	m, topo := lazyManager(t)
	k := shardkey.NewKeyspaceID(0x20, []byte("stuck"))
	if err := m.Apply(context.Background(), withState(t, topo, k, topology.Frozen)); err != nil {
		t.Fatal(err)
	}

	t.Run("maxHold", func(t *testing.T) {
		r, err := m.WriteShard(context.Background(), k, "us-east", 30*time.Millisecond)
		if !errors.Is(err, ErrFrozen) || !r.Frozen() {
			t.Fatalf("want ErrFrozen with the frozen route after maxHold, got %+v, %v", r, err)
		}
		if _, err := m.WriteShard(context.Background(), k, "us-east", 0); !errors.Is(err, ErrFrozen) {
			t.Fatalf("no hold allowed: %v", err)
		}
	})

	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := m.WriteShard(ctx, k, "us-east", time.Minute); !errors.Is(err, context.Canceled) {
			t.Fatalf("a cancelled request kept waiting: %v", err)
		}
	})

	t.Run("cancelled while held", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := holdWrite(t, ctx, m, k, time.Minute)
		cancel()
		if h := <-done; !errors.Is(h.err, context.Canceled) || errors.Is(h.err, ErrFrozen) {
			t.Fatalf("cancelled while held: %v", h.err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := m.WriteShard(ctx, k, "us-east", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a request past its deadline kept waiting: %v", err)
		}
	})
}

// holdRead starts a ReadShard and checks that it is still waiting a moment later.
func holdRead(t *testing.T, ctx context.Context, m *Manager, k shardkey.KeyspaceID, maxHold time.Duration) <-chan held {
	t.Helper()
	done := make(chan held, 1)
	go func() {
		r, err := m.ReadShard(ctx, k, "us-east", maxHold)
		done <- held{r, err}
	}()
	select {
	case h := <-done:
		t.Fatalf("a read of a frozen keyrange was not held: %+v", h)
	case <-time.After(50 * time.Millisecond):
	}
	return done
}

// A read of a frozen keyrange is held as a write is: released by the flip to the new owner (not the
// source, which may miss what another node already wrote at the target), by an abort to the same
// shard, and given up after maxHold or with its context.
func TestReadShardHeldWhileFrozen(t *testing.T) {
	ctx := context.Background()
	m, topo := lazyManager(t)
	k := shardkey.NewKeyspaceID(0x20, []byte("read-during-cutover"))
	before, err := m.ReadShard(ctx, k, "us-east", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	frozen := withState(t, topo, k, topology.Frozen)
	if err := m.Apply(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	read, write := holdRead(t, ctx, m, k, time.Minute), holdWrite(t, ctx, m, k, time.Minute)
	if err := m.Apply(ctx, flipped(t, frozen, k)); err != nil {
		t.Fatal(err)
	}
	for name, done := range map[string]<-chan held{"read": read, "write": write} {
		if h := <-done; h.err != nil || h.r.Shard != "us-east-3" || h.r.Frozen() {
			t.Fatalf("after the flip the %s went to %+v, %v; want us-east-3", name, h.r, h.err)
		}
	}

	// An abort releases the read to the same shard.
	m2, topo2 := lazyManager(t)
	frozen2 := withState(t, topo2, k, topology.Frozen)
	if err := m2.Apply(ctx, frozen2); err != nil {
		t.Fatal(err)
	}
	read = holdRead(t, ctx, m2, k, time.Minute)
	if err := m2.Apply(ctx, withState(t, frozen2, k, topology.Moving)); err != nil {
		t.Fatal(err)
	}
	if h := <-read; h.err != nil || h.r.Shard != before.Shard || h.r.Frozen() {
		t.Fatalf("after the abort the read went to %+v, %v; want %s", h.r, h.err, before.Shard)
	}

	// Bounded: ErrFrozen after maxHold, the context's error when it ends first.
	m3, topo3 := lazyManager(t)
	frozen3 := withState(t, topo3, k, topology.Frozen)
	if err := m3.Apply(ctx, frozen3); err != nil {
		t.Fatal(err)
	}
	if r, err := m3.ReadShard(ctx, k, "us-east", 30*time.Millisecond); !errors.Is(err, ErrFrozen) || !r.Frozen() {
		t.Fatalf("want ErrFrozen after maxHold, got %+v, %v", r, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	read = holdRead(t, cctx, m3, k, time.Minute)
	cancel()
	if h := <-read; !errors.Is(h.err, context.Canceled) {
		t.Fatalf("cancelled while held: %v", h.err)
	}
	// Other keyranges of the region are not held.
	for _, as := range frozen3.KeyRanges {
		sh, _ := frozen3.Shard(as.Shard)
		if as.State != topology.Serving || sh.Region != "us-east" {
			continue
		}
		if _, err := m3.ReadShard(ctx, shardkey.KeyspaceID(as.Range.Start), "us-east", 0); err != nil {
			t.Fatalf("a read of keyrange %s, which serves, was held: %v", as.Range, err)
		}
	}
}

// ReadRegion holds a fan-out while any keyrange of its region is frozen and answers with the table
// and the targets of one version; other regions' fan-outs go on.
func TestReadRegionHeldWhileAKeyRangeIsFrozen(t *testing.T) {
	ctx := context.Background()
	if _, err := newManager(t).ReadRegion(ctx, "us-east", time.Second); !errors.Is(err, ErrNoTopology) {
		t.Fatalf("before Apply: %v", err)
	}
	m, topo := lazyManager(t)
	v, err := m.ReadRegion(ctx, "us-east", 0)
	if err != nil || v.Table.Version() != topo.Version || len(v.Targets) != len(m.Targets("us-east")) {
		t.Fatalf("serving region: %+v, %v", v, err)
	}
	for _, tg := range v.Targets {
		if tg.Region != "us-east" {
			t.Fatalf("target of another region: %+v", tg)
		}
	}
	k := shardkey.NewKeyspaceID(0x20, []byte("fan-out"))
	frozen := withState(t, topo, k, topology.Frozen)
	if err := m.Apply(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadRegion(ctx, "eu-west", 0); err != nil {
		t.Fatalf("another region's fan-out was held: %v", err)
	}
	if _, err := m.ReadRegion(ctx, "us-east", 0); !errors.Is(err, ErrFrozen) {
		t.Fatalf("no hold allowed: %v", err)
	}
	if _, err := m.ReadRegion(ctx, "us-east", 30*time.Millisecond); !errors.Is(err, ErrFrozen) {
		t.Fatalf("after maxHold: %v", err)
	}
	type answer struct {
		v   RegionView
		err error
	}
	done := make(chan answer, 1)
	go func() {
		v, err := m.ReadRegion(ctx, "us-east", time.Minute)
		done <- answer{v, err}
	}()
	select {
	case a := <-done:
		t.Fatalf("a fan-out over a frozen keyrange was not held: %+v", a)
	case <-time.After(50 * time.Millisecond):
	}
	next := flipped(t, frozen, k)
	if err := m.Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil || a.v.Table.Version() != next.Version || len(a.v.Targets) != len(m.Targets("us-east")) {
		t.Fatalf("after the flip: %+v, %v (want version %d with us-east-3)", a.v, a.err, next.Version)
	}
	found := false
	for _, tg := range a.v.Targets {
		found = found || tg.Shard == "us-east-3"
	}
	if !found {
		t.Fatalf("the released fan-out misses the new shard: %+v", a.v.Targets)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.Apply(ctx, withState(t, next, k, topology.Frozen)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadRegion(cctx, "us-east", time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// The hot path of a write to a keyrange that is not frozen is a read's: no allocation.
func TestWriteShardNotFrozenDoesNotAllocate(t *testing.T) {
	m, _ := lazyManager(t)
	ctx := context.Background()
	k := shardkey.NewKeyspaceID(0x40, []byte("hot"))
	if n := testing.AllocsPerRun(100, func() {
		if _, err := m.WriteShard(ctx, k, "eu-west", time.Second); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("WriteShard allocates %v times per call", n)
	}
}

// Reads and writes are counted per keyrange and shard; a held write counts once, at the shard it is
// released to; refused routings are not counted; counts survive a new topology and the keyrange that
// left keeps its last count.
func TestKeyRangeCounts(t *testing.T) {
	ctx := context.Background()
	m, topo := lazyManager(t)
	if got := m.KeyRangeCounts(); len(got) != len(topo.KeyRanges) {
		t.Fatalf("%d counters, want one per keyrange (%d)", len(got), len(topo.KeyRanges))
	}
	k := shardkey.NewKeyspaceID(0x20, []byte("counted"))
	kr := topo.KeyRanges[rangeOf(t, topo, k)]
	count := func() KeyRangeCount {
		t.Helper()
		for _, c := range m.KeyRangeCounts() {
			if c.Range == kr.Range && c.Shard == kr.Shard {
				return c
			}
		}
		t.Fatalf("no counter for %s on %s", kr.Range, kr.Shard)
		return KeyRangeCount{}
	}
	for range 3 {
		if _, err := m.ReadShard(ctx, k, "us-east", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.WriteShard(ctx, k, "us-east", time.Second); err != nil {
		t.Fatal(err)
	}
	// Another region's request is refused, not counted.
	_, _ = m.ReadShard(ctx, k, "eu-west", time.Second)
	_, _ = m.WriteShard(ctx, k, "eu-west", time.Second)
	if c := count(); c.Reads != 3 || c.Writes != 1 || c.Region != "us-east" {
		t.Fatalf("counts %+v, want 3 reads and 1 write in us-east", c)
	}

	frozen := withState(t, topo, k, topology.Frozen)
	if err := m.Apply(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteShard(ctx, k, "us-east", 0); !errors.Is(err, ErrFrozen) {
		t.Fatal(err)
	}
	done := holdWrite(t, ctx, m, k, time.Minute)
	if c := count(); c.Writes != 1 {
		t.Fatalf("a refused or held write was counted: %+v", c)
	}
	if err := m.Apply(ctx, flipped(t, frozen, k)); err != nil {
		t.Fatal(err)
	}
	if h := <-done; h.err != nil {
		t.Fatal(h.err)
	}
	if c := count(); c.Reads != 3 || c.Writes != 1 {
		t.Fatalf("the source's counts changed after the flip: %+v", c)
	}
	var target KeyRangeCount
	for _, c := range m.KeyRangeCounts() {
		if c.Range == kr.Range && c.Shard == "us-east-3" {
			target = c
		}
	}
	if target.Writes != 1 || target.Reads != 0 {
		t.Fatalf("the released write was not counted once on the target: %+v", target)
	}
}

// Counting adds nothing to the hot path: no allocation for a read either.
func TestReadShardDoesNotAllocate(t *testing.T) {
	m, _ := lazyManager(t)
	ctx := context.Background()
	k := shardkey.NewKeyspaceID(0x40, []byte("hot"))
	if n := testing.AllocsPerRun(100, func() {
		if _, err := m.ReadShard(ctx, k, "eu-west", time.Second); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("ReadShard allocates %v times per call", n)
	}
}

// BenchmarkReadShard measures a counted read against Route (the same routing, not counted: the
// baseline), in parallel, so that contention on the counters shows.
func BenchmarkReadShard(b *testing.B) {
	ctx := context.Background()
	m, err := New(DefaultConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	if err := m.Apply(context.Background(), topology.Example()); err != nil {
		b.Fatal(err)
	}
	keys := make([]shardkey.KeyspaceID, 1024)
	for i := range keys {
		keys[i] = shardkey.NewKeyspaceID(0x40, []byte{byte(i), byte(i >> 8)})
	}
	b.Run("route", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := m.Route(keys[i&1023]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	b.Run("counted", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := m.ReadShard(ctx, keys[i&1023], "eu-west", time.Second); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// A pin's cutover (a frozen relocation) holds the user's writes at a node of the user's region and
// at a node of the target region (a write replayed there by a router that saw the flip first); the
// flip releases the first with the target region's answer (the router replays it) and the second
// at the target's shard. Other users of the keyrange are not held.
func TestWriteShardHoldsAFrozenRelocation(t *testing.T) {
	ctx := context.Background()
	m, topo := lazyManager(t)
	k := shardkey.NewKeyspaceID(0x20, []byte("pinned-user"))
	to := k.WithRegion(0x40)
	frozen := topo.Clone()
	frozen.Version++
	frozen.Relocations = []topology.Relocation{{From: k, To: to, State: topology.Frozen}}
	if err := m.Apply(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	if r, err := m.WriteShard(ctx, k+1, "us-east", 0); err != nil || r.Frozen() {
		t.Fatalf("a neighbour of the pinned user: %+v, %v", r, err)
	}
	if _, err := m.WriteShard(ctx, k, "us-east", 0); !errors.Is(err, ErrFrozen) {
		t.Fatalf("WriteShard of the pinned user without a hold = %v, want ErrFrozen", err)
	}
	home := holdWrite(t, ctx, m, k, time.Minute)
	away := make(chan held, 1)
	go func() {
		r, err := m.WriteShard(ctx, k, "eu-west", time.Minute)
		away <- held{r, err}
	}()
	select {
	case h := <-away:
		t.Fatalf("a write of the pinned user in the target region was not held: %+v", h)
	case <-time.After(50 * time.Millisecond):
	}
	flip := frozen.Clone()
	flip.Version++
	flip.Relocations = []topology.Relocation{{From: k, To: to}}
	if err := m.Apply(ctx, flip); err != nil {
		t.Fatal(err)
	}
	h := <-home
	var wr *WrongRegionError
	if !errors.As(h.err, &wr) || wr.Region != "eu-west" {
		t.Fatalf("the write held in us-east after the flip: %+v, %v; want the wrong-region answer naming eu-west", h.r, h.err)
	}
	h = <-away
	if h.err != nil || h.r.Region != "eu-west" || h.r.Route.KeyspaceID != to || h.r.Frozen() {
		t.Fatalf("the write held in eu-west after the flip: %+v, %v; want eu-west under %s", h.r, h.err, to)
	}
}

// WaitVersion answers at once when the version is held, wakes on the Apply that brings it (the first
// one included), and ends with the context.
func TestWaitVersion(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	topo := topology.Example()
	got := make(chan uint64, 1)
	go func() {
		v, err := m.WaitVersion(ctx, topo.Version)
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	select {
	case v := <-got:
		t.Fatalf("answered %d before any topology", v)
	case <-time.After(30 * time.Millisecond):
	}
	if err := m.Apply(ctx, topo); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != topo.Version {
		t.Fatalf("after the first Apply: %d, want %d", v, topo.Version)
	}
	if v, err := m.WaitVersion(ctx, topo.Version-1); err != nil || v != topo.Version {
		t.Fatalf("an older version: %d, %v", v, err)
	}
	next := topo.Clone()
	next.Version++
	go func() {
		v, _ := m.WaitVersion(ctx, next.Version)
		got <- v
	}()
	select {
	case v := <-got:
		t.Fatalf("answered %d before the version was applied", v)
	case <-time.After(30 * time.Millisecond):
	}
	if err := m.Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != next.Version {
		t.Fatalf("after the Apply: %d, want %d", v, next.Version)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if v, err := m.WaitVersion(cctx, next.Version+5); !errors.Is(err, context.DeadlineExceeded) || v != next.Version {
		t.Fatalf("a version never applied: %d, %v", v, err)
	}
}
