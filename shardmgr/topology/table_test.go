package topology

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

var update = flag.Bool("update", false, "rewrite golden files")

func mustCompile(t testing.TB, topo *Topology) *Table {
	t.Helper()
	tab, err := Compile(topo)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func ksid(s string) shardkey.KeyspaceID {
	k, err := shardkey.ParseKeyspaceID(s)
	if err != nil {
		panic(err)
	}
	return k
}

func TestLookup(t *testing.T) {
	tab := mustCompile(t, Example())
	cases := []struct {
		ksid  string
		shard string
		err   error
	}{
		{"2000000000000000", "us-east-1", nil},
		{"207fffffffffffff", "us-east-1", nil},
		{"2080000000000000", "us-east-2", nil},
		{"20ffffffffffffff", "us-east-2", nil},
		{"4000000000000000", "eu-west-1", nil},
		{"40ffffffffffffff", "eu-west-2", nil},
		{"6012345678abcdef", "ap-south-1", nil},
		{"0000000000000000", "", ErrNoShard},
		{"1fffffffffffffff", "", ErrNoShard},
		{"2100000000000000", "", ErrNoShard},
		{"ffffffffffffffff", "", ErrNoShard},
	}
	for _, tc := range cases {
		r, err := tab.Lookup(ksid(tc.ksid))
		if !errors.Is(err, tc.err) {
			t.Errorf("Lookup(%s) error = %v, want %v", tc.ksid, err, tc.err)
			continue
		}
		if err == nil && r.Shard.Name != tc.shard {
			t.Errorf("Lookup(%s) = %s, want %s", tc.ksid, r.Shard.Name, tc.shard)
		}
		if err == nil && (r.Region.Name != r.Shard.Region || !r.Range.Contains(r.KeyspaceID)) {
			t.Errorf("Lookup(%s) = inconsistent route %+v", tc.ksid, r)
		}
	}
}

func TestLookupFollowsRelocation(t *testing.T) {
	topo := Example()
	old := shardkey.NewKeyspaceID(0x20, []byte("user-7"))
	moved := old.WithRegion(0x40)
	topo.Relocations = []Relocation{{From: old, To: moved}}
	tab := mustCompile(t, topo)
	r, err := tab.Lookup(old)
	if err != nil {
		t.Fatal(err)
	}
	if r.Region.Name != "eu-west" || r.KeyspaceID != moved {
		t.Fatalf("relocated ksid routed to %s as %s, want eu-west as %s", r.Region.Name, r.KeyspaceID, moved)
	}
	if tab.Resolve(moved) != moved {
		t.Fatal("Resolve changed a ksid that was not relocated")
	}
}

// A frozen relocation does not route yet: its From stays where its keyrange is, marked so that
// writers hold its writes; other ksids of the keyrange are not marked.
func TestLookupMarksFrozenRelocation(t *testing.T) {
	topo := Example()
	old := shardkey.NewKeyspaceID(0x20, []byte("user-7"))
	topo.Relocations = []Relocation{{From: old, To: old.WithRegion(0x40), State: Frozen}}
	tab := mustCompile(t, topo)
	r, err := tab.Lookup(old)
	if err != nil {
		t.Fatal(err)
	}
	if r.Region.Name != "us-east" || r.KeyspaceID != old || !r.RelocationFrozen || r.State != Serving {
		t.Fatalf("frozen relocation: routed to %s as %s (relocation frozen %v, keyrange %s)", r.Region.Name, r.KeyspaceID, r.RelocationFrozen, r.State)
	}
	if tab.Resolve(old) != old {
		t.Fatal("Resolve applied a frozen relocation")
	}
	if r, _ := tab.Lookup(old + 1); r.RelocationFrozen {
		t.Fatal("a neighbour of the frozen ksid is marked")
	}
	// A user pinned before: the frozen entry is from its current ksid, reached through the active one.
	cur := old.WithRegion(0x40)
	topo.Relocations = []Relocation{{From: old, To: cur}, {From: cur, To: old.WithRegion(0x60), State: Frozen}}
	tab = mustCompile(t, topo)
	if r, _ := tab.Lookup(old); r.Region.Name != "eu-west" || !r.RelocationFrozen {
		t.Fatalf("old ID of a user pinned again: %s, frozen %v", r.Region.Name, r.RelocationFrozen)
	}
}

func TestCompileCopies(t *testing.T) {
	topo := Example()
	tab := mustCompile(t, topo)
	topo.Shards[0].Name = "renamed"
	r, _ := tab.Lookup(ksid("2000000000000001"))
	if r.Shard.Name != "us-east-1" {
		t.Fatal("table shares memory with the document it was compiled from")
	}
}

// TestRoutingGolden pins the routing table of the local topology: easier to read than to assert.
// Rewrite with: go test ./shardmgr/topology -run Golden -update
func TestRoutingGolden(t *testing.T) {
	topo, err := LoadFile(filepath.Join("..", "..", "deploy", "regions", "local", "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tab := mustCompile(t, topo)
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-10s %-12s %-8s %s\n", "keyrange", "region", "shard", "state", "database")
	for _, r := range tab.Routes() {
		fmt.Fprintf(&b, "%-10s %-10s %-12s %-8s %s:%d/%s\n", r.Range, r.Region.Name, r.Shard.Name, r.State, r.Shard.Conn.Host, r.Shard.Conn.Port, r.Shard.Conn.Database)
	}
	for _, k := range []string{"2000000000000000", "2080000000000000", "40c0ffee00000000", "6000000000000001", "60ffffffffffffff"} {
		r, err := tab.Lookup(ksid(k))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "lookup %s -> %s\n", k, r.Shard.Name)
	}
	golden := filepath.Join("testdata", "local-routing.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Fatalf("routing table changed; if intended, rerun with -update\n--- got\n%s--- want\n%s", b.String(), want)
	}
}

func TestLocalTopologyMatchesExampleAndRegionFiles(t *testing.T) {
	topo, err := LoadFile(filepath.Join("..", "..", "deploy", "regions", "local", "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := topo.Encode()
	b, _ := Example().Encode()
	if string(a) != string(b) {
		t.Errorf("deploy/regions/local/topology.yaml and Example() differ:\n%s\n%s", a, b)
	}
	for _, r := range topo.Regions {
		rf, err := LoadRegionFile(filepath.Join("..", "..", "deploy", "regions", r.Name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if rf.Code != r.Code || rf.APIService != r.APIService || rf.Name != r.Name {
			t.Errorf("region file %s disagrees with the local topology: %+v vs %+v", r.Name, rf, r)
		}
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]string{
		write("a.txt", "{}"):                                     "unknown file type",
		write("b.yaml", "regions: [\n"):                          "yaml",
		write("c.yaml", "regions:\n  - name: x\n    code: 20\n"): "code",
		write("d.yaml", "bogus: 1\n"):                            "unknown field",
		filepath.Join(dir, "missing.yaml"):                       "no such file",
	}
	for path, want := range cases {
		_, err := LoadFile(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadFile(%s) = %v, want an error mentioning %q", filepath.Base(path), err, want)
		}
	}
	if _, err := LoadRegionFile(write("r.yaml", "name: x\ncode: \"20\"\nkeyrange: \"40-41\"\napi_service: a\nconsul_dc: d\nredis_addr: h:1\n")); err == nil || !strings.Contains(err.Error(), "does not match code") {
		t.Errorf("region file with a wrong keyrange: %v", err)
	}
}

// A topology of realistic size for the lookup benchmarks: 3 regions, 64 keyranges each, and relocations.
func bigTopology() *Topology {
	topo := Example()
	topo.Shards, topo.KeyRanges = nil, nil
	for i, r := range topo.Regions {
		whole := r.KeyRange()
		step := (uint64(1) << 56) / 64
		for j := 0; j < 64; j++ {
			name := fmt.Sprintf("%s-%d", r.Name, j)
			topo.Shards = append(topo.Shards, Shard{Name: name, Region: r.Name, Conn: Conn{Host: "h", Port: 5432 + i, Database: name, User: "u"}})
			kr := shardkey.KeyRange{Start: whole.Start + uint64(j)*step, End: whole.Start + uint64(j+1)*step}
			topo.KeyRanges = append(topo.KeyRanges, Assignment{Range: kr, Shard: name, State: Serving})
		}
	}
	for i := 0; i < 1000; i++ {
		k := shardkey.NewKeyspaceID(0x20, []byte(fmt.Sprint("moved-", i)))
		topo.Relocations = append(topo.Relocations, Relocation{From: k, To: k.WithRegion(0x40)})
	}
	return topo
}

func benchKeys() []shardkey.KeyspaceID {
	keys := make([]shardkey.KeyspaceID, 1024)
	for i := range keys {
		keys[i] = shardkey.NewKeyspaceID(shardkey.Region(0x20+0x20*(i%3)), []byte(fmt.Sprint("user-", i)))
	}
	return keys
}

func BenchmarkLookup(b *testing.B) {
	tab := mustCompile(b, bigTopology())
	keys := benchKeys()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tab.Lookup(keys[i&1023]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupBaselineLinear is the naive alternative the table replaces: scan every keyrange.
func BenchmarkLookupBaselineLinear(b *testing.B) {
	topo := bigTopology()
	keys := benchKeys()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := keys[i&1023]
		found := false
		for j := range topo.KeyRanges {
			if topo.KeyRanges[j].Range.Contains(k) {
				found = true
				break
			}
		}
		if !found {
			b.Fatal("not found")
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab := mustCompile(t, bigTopology())
	keys := benchKeys()
	allocs := testing.AllocsPerRun(1000, func() {
		for _, k := range keys[:16] {
			if _, err := tab.Lookup(k); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = tab.Lookup(0)
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %.1f times per run", allocs)
	}
}

// LookupIndex names the position of the route in Routes(): callers keep per-keyrange data beside it.
func TestLookupIndexMatchesRoutes(t *testing.T) {
	tab := mustCompile(t, bigTopology())
	for _, k := range benchKeys() {
		r, i, err := tab.LookupIndex(k)
		if err != nil {
			t.Fatal(err)
		}
		if got := tab.Routes()[i]; got.Range != r.Range || got.Shard != r.Shard {
			t.Fatalf("ksid %s: index %d is %s on %s, Lookup said %s on %s", k, i, got.Range, got.Shard.Name, r.Range, r.Shard.Name)
		}
	}
	if _, i, err := tab.LookupIndex(0); !errors.Is(err, ErrNoShard) || i != -1 {
		t.Fatalf("uncovered ksid: %d, %v", i, err)
	}
}
