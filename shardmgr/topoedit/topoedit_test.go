package topoedit

import (
	"errors"
	"reflect"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func newShard(name, region, db string) topology.Shard {
	return topology.Shard{Name: name, Region: region, Conn: topology.Conn{Host: "127.0.0.1", Port: 15432, Database: db, User: "meridian"}}
}

func TestAddShard(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shard topology.Shard
		want  error
	}{
		{"new", newShard("us-east-3", "us-east", "meridian_us_east_3"), nil},
		{"duplicate name", newShard("us-east-1", "us-east", "other"), ErrShardExists},
		{"same database", newShard("us-east-3", "us-east", "meridian_us_east_1"), ErrShardExists},
		{"unknown region", newShard("mars-1", "mars", "meridian_mars_1"), ErrUnknownRegion},
		{"bad name", newShard("Bad_Name", "us-east", "x"), topology.ErrInvalid},
		{"no user", topology.Shard{Name: "us-east-3", Region: "us-east", Conn: topology.Conn{Host: "h", Port: 1, Database: "d"}}, topology.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := topology.Example()
			before := topo.Clone()
			err := AddShard(topo, tc.shard)
			if !errors.Is(err, tc.want) {
				t.Fatalf("AddShard: %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if !reflect.DeepEqual(topo, before) {
					t.Fatal("a refused add changed the document")
				}
				return
			}
			if s, ok := topo.Shard(tc.shard.Name); !ok || s != tc.shard || len(topo.RangesOf(s.Name)) != 0 {
				t.Fatalf("added shard: %+v %v", s, ok)
			}
		})
	}
}

func TestRemoveShard(t *testing.T) {
	topo := topology.Example()
	if err := AddShard(topo, newShard("us-east-3", "us-east", "meridian_us_east_3")); err != nil {
		t.Fatal(err)
	}
	before := topo.Clone()
	if err := RemoveShard(topo, "us-east-1"); !errors.Is(err, ErrShardOwnsKeyRanges) {
		t.Fatalf("remove a shard with keyranges: %v", err)
	}
	if err := RemoveShard(topo, "nope"); !errors.Is(err, ErrUnknownShard) {
		t.Fatalf("remove an unknown shard: %v", err)
	}
	if !reflect.DeepEqual(topo, before) {
		t.Fatal("a refused remove changed the document")
	}
	if err := RemoveShard(topo, "us-east-3"); err != nil {
		t.Fatal(err)
	}
	if _, ok := topo.Shard("us-east-3"); ok || len(topo.Shards) != 6 {
		t.Fatal("shard still there")
	}
}

func TestSplit(t *testing.T) {
	k := func(s string) shardkey.KeyspaceID {
		v, err := shardkey.ParseKeyspaceID(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	kr := shardkey.MustParseKeyRange
	for _, tc := range []struct {
		name   string
		kr     string
		at     shardkey.KeyspaceID
		state  topology.State
		want   error
		lo, hi string
	}{
		{"middle", "20-2080", k("2040000000000000"), topology.Serving, nil, "20-2040", "2040-2080"},
		{"long point", "20-2080", k("20123456789abcde"), topology.Serving, nil, "20-20123456789abcde", "20123456789abcde-2080"},
		{"at the start", "20-2080", k("2000000000000000"), topology.Serving, ErrBadSplitPoint, "", ""},
		{"at the end", "20-2080", k("2080000000000000"), topology.Serving, ErrBadSplitPoint, "", ""},
		{"outside", "20-2080", k("4010000000000000"), topology.Serving, ErrBadSplitPoint, "", ""},
		{"inside an assignment", "20-2040", k("2020000000000000"), topology.Serving, ErrNotAnAssignment, "", ""},
		{"spans two", "2040-20c0", k("2080000000000000"), topology.Serving, ErrNotAnAssignment, "", ""},
		{"nowhere", "80-90", k("8800000000000000"), topology.Serving, ErrNotAnAssignment, "", ""},
		{"moving", "20-2080", k("2040000000000000"), topology.Moving, ErrNotServing, "", ""},
		{"frozen", "20-2080", k("2040000000000000"), topology.Frozen, ErrNotServing, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := topology.Example()
			topo.KeyRanges[0].State = tc.state
			before := topo.Clone()
			lo, hi, err := Split(topo, kr(tc.kr), tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Split: %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if !reflect.DeepEqual(topo, before) {
					t.Fatal("a refused split changed the document")
				}
				return
			}
			if lo.String() != tc.lo || hi.String() != tc.hi {
				t.Fatalf("halves %s %s, want %s %s", lo, hi, tc.lo, tc.hi)
			}
			if err := topo.Validate(); err != nil {
				t.Fatal(err)
			}
			got := topo.RangesOf("us-east-1")
			want := []topology.Assignment{{Range: lo, Shard: "us-east-1", State: topology.Serving}, {Range: hi, Shard: "us-east-1", State: topology.Serving}}
			if !reflect.DeepEqual(got, want) || len(topo.KeyRanges) != 7 {
				t.Fatalf("assignments of us-east-1: %+v", got)
			}
		})
	}
}
