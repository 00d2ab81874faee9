package topostore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/deploy/local"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// rawKV reads the key straight from Consul, bypassing the store, to check what was (not) written.
func rawKV(t testing.TB, c *api.Client, key string) *api.KVPair {
	t.Helper()
	p, _, err := c.KV().Get(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStoreCreateLoadUpdate(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))

	if _, _, err := s.Load(ctx); !errors.Is(err, topostore.ErrNotFound) {
		t.Fatalf("Load of an absent key = %v, want ErrNotFound", err)
	}

	topo := example(42) // Create ignores the caller's version
	idx1, err := s.Create(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	if topo.Version != 1 || topo.UpdatedAt.IsZero() {
		t.Fatalf("after Create: version %d, updated_at %v; want 1 and a stamp", topo.Version, topo.UpdatedAt)
	}
	got, idx, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx != idx1 || got.Version != 1 || !got.UpdatedAt.Equal(topo.UpdatedAt) {
		t.Fatalf("Load = version %d index %d updated %v; want 1, %d, %v", got.Version, idx, got.UpdatedAt, idx1, topo.UpdatedAt)
	}
	if p := rawKV(t, c, s.Key()); p.ModifyIndex != idx1 {
		t.Fatalf("Create returned index %d, Consul has %d", idx1, p.ModifyIndex)
	}

	if _, err := s.Create(ctx, example(1)); !errors.Is(err, topostore.ErrConflict) {
		t.Fatalf("second Create = %v, want ErrConflict", err)
	}

	got.KeyRanges[0].State = topology.Frozen
	idx2, err := s.Update(ctx, got, idx)
	if err != nil {
		t.Fatal(err)
	}
	if idx2 <= idx1 || got.Version != 2 {
		t.Fatalf("Update: index %d (was %d), version %d; want a higher index and version 2", idx2, idx1, got.Version)
	}
	// The caller's document and the new index go straight into the next Update.
	got.KeyRanges[0].State = topology.Serving
	idx3, err := s.Update(ctx, got, idx2)
	if err != nil {
		t.Fatal(err)
	}
	final, idx, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if final.Version != 3 || idx != idx3 || final.KeyRanges[0].State != topology.Serving {
		t.Fatalf("final: version %d index %d state %s; want 3, %d, serving", final.Version, idx, final.KeyRanges[0].State, idx3)
	}
	if _, err := s.Update(ctx, final, 0); err == nil {
		t.Fatal("Update with index 0 succeeded")
	}
}

// UpdateWritten writes a successor of the store's own last write with check-and-set on that write's
// index alone; anything written in between makes it a conflict, and nothing is written then.
func TestStoreUpdateWritten(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))
	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	doc, idx, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doc.KeyRanges[0].State = topology.Frozen
	frozenIdx, err := s.Update(ctx, doc, idx)
	if err != nil {
		t.Fatal(err)
	}
	doc.KeyRanges[0].State = topology.Serving
	flipIdx, err := s.UpdateWritten(ctx, doc, frozenIdx)
	if err != nil {
		t.Fatal(err)
	}
	got, idx, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx != flipIdx || got.Version != 3 || doc.Version != 3 || got.KeyRanges[0].State != topology.Serving {
		t.Fatalf("after UpdateWritten: version %d (caller's %d) index %d state %s; want 3, %d, serving", got.Version, doc.Version, idx, got.KeyRanges[0].State, flipIdx)
	}
	// Another writer in between: a conflict, and the stored document stays.
	other := got.Clone()
	other.Shards[0].Conn.Port = 20999
	if _, err := s.Update(ctx, other, idx); err != nil {
		t.Fatal(err)
	}
	doc.KeyRanges[0].State = topology.Frozen
	if _, err := s.UpdateWritten(ctx, doc, flipIdx); !errors.Is(err, topostore.ErrConflict) {
		t.Fatalf("UpdateWritten after another write = %v, want ErrConflict", err)
	}
	if after, _, err := s.Load(ctx); err != nil || after.Version != 4 || after.KeyRanges[0].State != topology.Serving || after.Shards[0].Conn.Port != 20999 {
		t.Fatalf("the conflicting UpdateWritten changed the document: %+v, %v", after, err)
	}
	if _, err := s.UpdateWritten(ctx, doc, 0); err == nil {
		t.Fatal("UpdateWritten with index 0 succeeded")
	}
}

// TestStoreUpdateCASConflict: two writers that read the same index race; exactly one wins.
func TestStoreUpdateCASConflict(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))
	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		base, idx, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		const writers = 2
		errs := make([]error, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			mine := base.Clone()
			mine.Shards[0].Conn.Port = 20000 + round*10 + i
			wg.Go(func() {
				<-start
				_, errs[i] = s.Update(ctx, mine, idx)
			})
		}
		close(start)
		wg.Wait()
		var won, lost int
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case errors.Is(err, topostore.ErrConflict):
				lost++
			default:
				t.Fatalf("round %d: unexpected error %v", round, err)
			}
		}
		if won != 1 || lost != 1 {
			t.Fatalf("round %d: %d writers won and %d lost (%v); want exactly one winner", round, won, lost, errs)
		}
		after, _, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.Version != base.Version+1 {
			t.Fatalf("round %d: version %d after one winning write on %d", round, after.Version, base.Version)
		}
	}
}

func TestStoreUpdateStale(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))
	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	old, oldIdx, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newer := old.Clone()
	newIdx, err := s.Update(ctx, newer, oldIdx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		version uint64
		index   uint64
		want    error
	}{
		{"old document with the new index", old.Version, newIdx, topostore.ErrStale},
		{"version from the future", newer.Version + 3, newIdx, topostore.ErrStale},
		{"old index", newer.Version, oldIdx, topostore.ErrConflict},
	}
	for _, tt := range tests {
		doc := old.Clone()
		doc.Version = tt.version
		if _, err := s.Update(ctx, doc, tt.index); !errors.Is(err, tt.want) {
			t.Errorf("%s: Update = %v, want %v", tt.name, err, tt.want)
		}
	}
	if p := rawKV(t, c, s.Key()); p.ModifyIndex != newIdx {
		t.Fatalf("a refused update wrote: index %d, want %d", p.ModifyIndex, newIdx)
	}
}

func TestStoreRefusesInvalidDocument(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))

	bad := example(1)
	bad.KeyRanges[0].Shard = "eu-west-1" // a us-east keyrange on an eu-west shard: breaks residency
	if _, err := s.Create(ctx, bad); !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("Create(invalid) = %v, want topology.ErrInvalid", err)
	}
	if p := rawKV(t, c, s.Key()); p != nil {
		t.Fatalf("Create(invalid) wrote the key (index %d)", p.ModifyIndex)
	}

	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	before := rawKV(t, c, s.Key())
	cur, idx, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur.Regions[1].Code = cur.Regions[0].Code // two regions with one code
	if _, err := s.Update(ctx, cur, idx); !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("Update(invalid) = %v, want topology.ErrInvalid", err)
	}
	after := rawKV(t, c, s.Key())
	if after.ModifyIndex != before.ModifyIndex || !bytes.Equal(after.Value, before.Value) {
		t.Fatal("Update(invalid) changed the stored document")
	}
	if cur.Version != 1 {
		t.Fatalf("a refused Update changed the caller's version to %d", cur.Version)
	}
}

func TestStoreLoadInvalidStoredDocument(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))
	if _, err := c.KV().Put(&api.KVPair{Key: s.Key(), Value: []byte(`{"version": 3, "regions": "nope"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx); !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("Load of a corrupt document = %v, want topology.ErrInvalid", err)
	}
	// Its version is readable, so a good successor can replace it.
	p := rawKV(t, c, s.Key())
	if _, err := s.Update(ctx, example(3), p.ModifyIndex); err != nil {
		t.Fatalf("replacing a stored document that fails validation: %v", err)
	}
	got, _, err := s.Load(ctx)
	if err != nil || got.Version != 4 {
		t.Fatalf("after repair: %v, %v; want version 4", got, err)
	}
}

// relocation returns a valid relocation of user i from us-east (0x20) to eu-west (0x40).
func relocation(t testing.TB, i int) topology.Relocation {
	t.Helper()
	from, err := shardkey.MakeKeyspaceID(0x20, uint64(i+1))
	if err != nil {
		t.Fatal(err)
	}
	to, err := shardkey.MakeKeyspaceID(0x40, uint64(i+1))
	if err != nil {
		t.Fatal(err)
	}
	return topology.Relocation{From: from, To: to}
}

// TestStoreModifyContention: goroutines each add relocations through Modify at the same time; none
// is lost and every write bumped the version by one.
func TestStoreModifyContention(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))
	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	const workers, each = 6, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for j := range each {
				rel := relocation(t, w*each+j)
				_, err := s.Modify(ctx, func(topo *topology.Topology) error {
					topo.Relocations = append(topo.Relocations, rel)
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d, relocation %d: %w", w, j, err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, _, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1+workers*each {
		t.Errorf("version %d, want %d (one per Modify)", got.Version, 1+workers*each)
	}
	seen := make(map[shardkey.KeyspaceID]bool)
	for _, r := range got.Relocations {
		seen[r.From] = true
	}
	for i := range workers * each {
		if r := relocation(t, i); !seen[r.From] {
			t.Errorf("relocation %d (%s) lost", i, r.From)
		}
	}
}

func TestStoreModifyAborts(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	s := topostore.NewStore(c, uniqueKey(t))
	if _, err := s.Create(ctx, example(1)); err != nil {
		t.Fatal(err)
	}
	before := rawKV(t, c, s.Key())

	errNo := errors.New("plan refused")
	if _, err := s.Modify(ctx, func(*topology.Topology) error { return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("Modify with a failing fn = %v, want it wrapped", err)
	}
	if _, err := s.Modify(ctx, func(topo *topology.Topology) error {
		topo.Shards[0].Region = "mars"
		return nil
	}); !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("Modify producing an invalid document = %v, want topology.ErrInvalid", err)
	}
	if after := rawKV(t, c, s.Key()); after.ModifyIndex != before.ModifyIndex {
		t.Fatal("an aborted Modify wrote")
	}

	missing := topostore.NewStore(c, uniqueKey(t))
	if _, err := missing.Modify(ctx, func(*topology.Topology) error { return nil }); !errors.Is(err, topostore.ErrNotFound) {
		t.Fatalf("Modify of an absent key = %v, want ErrNotFound", err)
	}
}

// Only shardmgr's role writes the topology: a router's or a node's token is refused with ErrDenied
// (not reported as a conflict, nor retried), and nothing is written.
func TestStoreWriteDeniedByACL(t *testing.T) {
	ctx := context.Background()
	c := consulClient(t, nil)
	key := uniqueKey(t)
	agent := testenv.Consul(t)
	for _, role := range []string{local.RoleRouter, local.RoleNode} {
		s := topostore.NewStore(testenv.ConsulClient(t, agent, role), key)
		if _, err := s.Create(ctx, example(1)); !errors.Is(err, topostore.ErrDenied) || errors.Is(err, topostore.ErrConflict) {
			t.Errorf("%s: Create = %v, want ErrDenied", role, err)
		}
		if p := rawKV(t, c, key); p != nil {
			t.Fatalf("%s: a refused Create wrote %s", role, p.Value)
		}
	}
	idx, err := topostore.NewStore(c, key).Create(ctx, example(1))
	if err != nil {
		t.Fatal(err)
	}
	s := topostore.NewStore(testenv.ConsulClient(t, agent, local.RoleRouter), key)
	got, _, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("a router reads the topology: %v", err)
	}
	_, err = s.Modify(ctx, func(t *topology.Topology) error { t.KeyRanges[0].State = topology.Frozen; return nil })
	if !errors.Is(err, topostore.ErrDenied) {
		t.Errorf("router Modify = %v, want ErrDenied", err)
	}
	if _, err := s.Update(ctx, got, idx); !errors.Is(err, topostore.ErrDenied) {
		t.Errorf("router Update = %v, want ErrDenied", err)
	}
}
