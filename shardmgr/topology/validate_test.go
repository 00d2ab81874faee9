package topology

import (
	"errors"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

func TestExampleIsValid(t *testing.T) {
	if err := Example().Validate(); err != nil {
		t.Fatalf("Example() is invalid: %v", err)
	}
}

func TestValidateRefuses(t *testing.T) {
	kr := shardkey.MustParseKeyRange
	cases := []struct {
		name   string
		mutate func(*Topology)
		want   string // a fragment of the error that names the problem
	}{
		{"no regions", func(t *Topology) { t.Regions = nil; t.Shards = nil; t.KeyRanges = nil }, "at least one region"},
		{"bad region name", func(t *Topology) { t.Regions[0].Name = "US East" }, "regions[0]"},
		{"duplicate region name", func(t *Topology) { t.Regions[1].Name = "us-east" }, "duplicate region name"},
		{"duplicate region code", func(t *Topology) { t.Regions[1].Code = 0x20 }, "already used by region us-east"},
		{"missing api service", func(t *Topology) { t.Regions[0].APIService = "" }, "api_service is required"},
		{"missing consul dc", func(t *Topology) { t.Regions[2].ConsulDC = "" }, "consul_dc is required"},
		{"bad redis addr", func(t *Topology) { t.Regions[0].RedisAddr = "localhost" }, "redis_addr"},
		{"redis port out of range", func(t *Topology) { t.Regions[0].RedisAddr = "h:70000" }, "invalid port"},
		{"shard in unknown region", func(t *Topology) { t.Shards[0].Region = "mars" }, `unknown region "mars"`},
		{"duplicate shard", func(t *Topology) { t.Shards[1].Name = "us-east-1" }, "duplicate shard name"},
		{"bad port", func(t *Topology) { t.Shards[0].Conn.Port = 0 }, "conn.port 0"},
		{"no database", func(t *Topology) { t.Shards[0].Conn.Database = "" }, "conn.database is required"},
		{"no user", func(t *Topology) { t.Shards[0].Conn.User = "" }, "conn.user is required"},
		{"bad sslmode", func(t *Topology) { t.Shards[0].Conn.SSLMode = "maybe" }, "sslmode"},
		{"two password sources", func(t *Topology) {
			t.Shards[0].Conn.PasswordEnv = "PW"
			t.Shards[0].Conn.PasswordFile = "/pw"
		}, "exclusive"},
		{"min above max conns", func(t *Topology) { t.Shards[0].Conn.MinConns = 20 }, "min_conns"},
		{"keyrange on unknown shard", func(t *Topology) { t.KeyRanges[0].Shard = "nope" }, `unknown shard "nope"`},
		{"bad state", func(t *Topology) { t.KeyRanges[0].State = "paused" }, `state "paused"`},
		{"keyrange outside its region", func(t *Topology) {
			// us-east-1 (region 20) given eu-west's first half.
			t.KeyRanges[2].Shard = "us-east-1"
		}, "outside region us-east"},
		{"keyrange spanning two regions", func(t *Topology) { t.KeyRanges[1].Range = kr("2080-41") }, "outside region us-east"},
		{"overlap", func(t *Topology) { t.KeyRanges[1].Range = kr("2040-21") }, "overlap"},
		{"gap inside a region", func(t *Topology) { t.KeyRanges[1].Range = kr("2090-21") }, "gap 2080-2090"},
		{"gap at a region's end", func(t *Topology) { t.KeyRanges[1].Range = kr("2080-20f0") }, "gap 20f0-21"},
		{"region without keyranges", func(t *Topology) { t.KeyRanges = t.KeyRanges[2:] }, "no keyrange covers"},
		{"relocation to itself", func(t *Topology) {
			k := shardkey.NewKeyspaceID(0x20, []byte("a"))
			t.Relocations = []Relocation{{From: k, To: k}}
		}, "same"},
		{"relocation to unknown region", func(t *Topology) {
			k := shardkey.NewKeyspaceID(0x20, []byte("a"))
			t.Relocations = []Relocation{{From: k, To: k.WithRegion(0x99)}}
		}, "unknown region code 99"},
		{"relocated twice", func(t *Topology) {
			k := shardkey.NewKeyspaceID(0x20, []byte("a"))
			t.Relocations = []Relocation{{From: k, To: k.WithRegion(0x40)}, {From: k, To: k.WithRegion(0x60)}}
		}, "relocated twice"},
		{"relocation chain", func(t *Topology) {
			k := shardkey.NewKeyspaceID(0x20, []byte("a"))
			t.Relocations = []Relocation{{From: k, To: k.WithRegion(0x40)}, {From: k.WithRegion(0x40), To: k.WithRegion(0x60)}}
		}, "collapse the chain"},
		{"bad relocation state", func(t *Topology) {
			k := shardkey.NewKeyspaceID(0x20, []byte("a"))
			t.Relocations = []Relocation{{From: k, To: k.WithRegion(0x40), State: Moving}}
		}, `state "moving"`},
		{"frozen and active from one ksid", func(t *Topology) {
			k := shardkey.NewKeyspaceID(0x20, []byte("a"))
			t.Relocations = []Relocation{{From: k, To: k.WithRegion(0x40)}, {From: k, To: k.WithRegion(0x60), State: Frozen}}
		}, "relocated twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topo := Example()
			tc.mutate(topo)
			err := topo.Validate()
			if err == nil {
				t.Fatal("Validate accepted an invalid topology")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if _, err := Compile(topo); err == nil {
				t.Error("Compile accepted an invalid topology")
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	topo := Example()
	topo.Shards[0].Conn.Port = -1
	topo.Regions[1].APIService = ""
	err := topo.Validate()
	if err == nil || !strings.Contains(err.Error(), "conn.port -1") || !strings.Contains(err.Error(), "api_service") {
		t.Fatalf("want both problems reported, got %v", err)
	}
}

func TestValidateAcceptsUnevenAndUnboundedRanges(t *testing.T) {
	topo := Example()
	// A region at the very top of the keyspace ends unbounded.
	topo.Regions = append(topo.Regions, Region{Name: "edge", Code: 0xff, APIService: "api-edge", RedisAddr: "127.0.0.1:1", ConsulDC: "dc1"})
	topo.Shards = append(topo.Shards, Shard{Name: "edge-1", Region: "edge", Conn: Conn{Host: "h", Port: 1, Database: "d", User: "u"}},
		Shard{Name: "edge-2", Region: "edge", Conn: Conn{Host: "h", Port: 1, Database: "d2", User: "u"}},
		Shard{Name: "spare", Region: "edge", Conn: Conn{Host: "h", Port: 1, Database: "d3", User: "u"}})
	topo.KeyRanges = append(topo.KeyRanges,
		Assignment{Range: shardkey.MustParseKeyRange("ff-ff10"), Shard: "edge-1", State: Moving},
		Assignment{Range: shardkey.MustParseKeyRange("ff10-"), Shard: "edge-2", State: Frozen})
	if err := topo.Validate(); err != nil {
		t.Fatalf("valid topology refused: %v", err)
	}
}

func TestDecodeStrict(t *testing.T) {
	good, err := Example().Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(good)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	again, _ := back.Encode()
	if string(again) != string(good) {
		t.Fatalf("encode/decode is not stable:\n%s\n%s", good, again)
	}
	for name, doc := range map[string]string{
		"secret field":  strings.Replace(string(good), `"user": "meridian",`, `"user": "meridian", "password": "hunter2",`, 1),
		"trailing data": string(good) + "{}",
		"not json":      "regions: []",
		"bad keyrange":  strings.Replace(string(good), `"20-2080"`, `"20-2g"`, 1),
		"bad ksid":      strings.Replace(string(good), `"keyranges": [`, `"relocations": [{"from": "20zz", "to": "4000000000000001"}], "keyranges": [`, 1),
	} {
		if _, err := Decode([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	a := Example()
	b := a.Clone()
	b.Shards[0].Name = "changed"
	b.KeyRanges[0].State = Frozen
	if a.Shards[0].Name == "changed" || a.KeyRanges[0].State == Frozen {
		t.Fatal("Clone shares slices with the original")
	}
}

// A pin's cutover of a user pinned before: the frozen entry starts where the active one ends (a
// second pin) or leads back to where it started (a pin home). Neither is a chain: the flip
// collapses them.
func TestValidateAcceptsFrozenRelocationsOfPinnedUsers(t *testing.T) {
	k := shardkey.NewKeyspaceID(0x20, []byte("a"))
	for name, rels := range map[string][]Relocation{
		"pinned again": {{From: k, To: k.WithRegion(0x40)}, {From: k.WithRegion(0x40), To: k.WithRegion(0x60), State: Frozen}},
		"pinned home":  {{From: k, To: k.WithRegion(0x40)}, {From: k.WithRegion(0x40), To: k, State: Frozen}},
	} {
		topo := Example()
		topo.Relocations = rels
		if err := topo.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
