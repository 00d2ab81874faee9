package plan

import (
	"bytes"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topoedit"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// update rewrites the golden files: go test ./shardmgr/plan -run Golden -update
var update = flag.Bool("update", false, "rewrite testdata/*.golden with the plans the tests make")

// bound parses a Vitess bound ("2040") as a ksid.
func bound(t *testing.T, s string) shardkey.KeyspaceID {
	t.Helper()
	kr, err := shardkey.ParseKeyRange(s + "-")
	if err != nil {
		t.Fatalf("bound %q: %v", s, err)
	}
	return shardkey.KeyspaceID(kr.Start)
}

// layout builds a topology and its statistics from lines of a small language:
//
//	shard <name> <region>                                   a shard added to topology.Example()
//	drop <name>                                             an example shard removed (with its keyrange)
//	kr <range> <shard> rows=N [req=N] [median=HEX] [state=S] an assignment; the keyranges given for a
//	                                                        region replace that region's example ones
//
// Regions without kr lines keep the example's keyranges, measured as empty.
func layout(t *testing.T, spec string) (*topology.Topology, []Stats) {
	t.Helper()
	topo := topology.Example()
	var krs []topology.Assignment
	var stats []Stats
	replaced := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(spec), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "shard":
			s := topology.Shard{Name: f[1], Region: f[2], Conn: topology.Conn{Host: "127.0.0.1", Port: 15432, Database: strings.ReplaceAll(f[1], "-", "_"), User: "meridian"}}
			if err := topoedit.AddShard(topo, s); err != nil {
				t.Fatal(err)
			}
		case "drop":
			for i, a := range topo.KeyRanges {
				if a.Shard == f[1] {
					topo.KeyRanges = append(topo.KeyRanges[:i], topo.KeyRanges[i+1:]...)
					break
				}
			}
			// Not topoedit.RemoveShard: the region's keyranges are replaced by kr lines, validated at the end.
			topo.Shards = slices.DeleteFunc(topo.Shards, func(s topology.Shard) bool { return s.Name == f[1] })
		case "kr":
			a := topology.Assignment{Range: shardkey.MustParseKeyRange(f[1]), Shard: f[2], State: topology.Serving}
			st := Stats{KeyRange: a.Range, Shard: a.Shard}
			for _, kv := range f[3:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "rows", "req":
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						t.Fatal(err)
					}
					if k == "rows" {
						st.Rows, st.Bytes = n, n*120
					} else {
						st.Requests = n
					}
				case "median":
					st.Median = bound(t, v)
				case "state":
					a.State = topology.State(v)
				default:
					t.Fatalf("layout: unknown field %q", kv)
				}
			}
			s, ok := topo.Shard(a.Shard)
			if !ok {
				t.Fatalf("layout: unknown shard %s", a.Shard)
			}
			replaced[s.Region] = true
			krs = append(krs, a)
			stats = append(stats, st)
		default:
			t.Fatalf("layout: unknown line %q", line)
		}
	}
	for _, a := range topo.KeyRanges {
		s, _ := topo.Shard(a.Shard)
		if !replaced[s.Region] {
			krs = append(krs, a)
			stats = append(stats, Stats{KeyRange: a.Range, Shard: a.Shard})
		}
	}
	topo.KeyRanges = krs
	topo.Version = 7
	if err := topo.Validate(); err != nil {
		t.Fatalf("layout: %v", err)
	}
	return topo, stats
}

var goldenCases = []struct {
	name   string
	region string
	spec   string
}{
	{"balanced", "", `
kr 20-2080   us-east-1  rows=1010 median=2040
kr 2080-21   us-east-2  rows=990  median=20c0
kr 40-4080   eu-west-1  rows=500  req=480 median=4040
kr 4080-41   eu-west-2  rows=520  req=530 median=40c0
kr 60-6080   ap-south-1 rows=0
kr 6080-61   ap-south-2 rows=0
`},
	{"hot-shard", "us-east", `
shard us-east-3 us-east
kr 20-2040   us-east-1 rows=3000 median=2020
kr 2040-2080 us-east-1 rows=3000 median=2060
kr 2080-20c0 us-east-2 rows=2000 median=20a0
kr 20c0-21   us-east-3 rows=2000 median=20e0
`},
	{"huge-keyrange", "us-east", `
kr 20-2080   us-east-1 rows=9000 median=2037
kr 2080-21   us-east-2 rows=1000 median=20c1
`},
	{"new-empty-shard", "us-east", `
shard us-east-3 us-east
kr 20-2080   us-east-1 rows=5000 median=2040
kr 2080-21   us-east-2 rows=5000 median=20c0
`},
	{"uneven-load-even-rows", "us-east", `
kr 20-2080   us-east-1 rows=5000 req=90000 median=2040
kr 2080-21   us-east-2 rows=5000 req=10000 median=20c0
`},
	{"three-regions", "", `
shard eu-west-3 eu-west
kr 20-2040   us-east-1  rows=4000 median=2020
kr 2040-2080 us-east-1  rows=4000 median=2060
kr 2080-21   us-east-2  rows=2000 median=20c0
kr 40-4080   eu-west-1  rows=6000 median=4040
kr 4080-41   eu-west-2  rows=6000 median=40c0
kr 60-6080   ap-south-1 rows=100  median=6040
kr 6080-61   ap-south-2 rows=7000 median=60c0
`},
	{"ties", "us-east", `
shard us-east-3 us-east
kr 20-2040   us-east-1 rows=2500 median=2020
kr 2040-2080 us-east-1 rows=2500 median=2060
kr 2080-20c0 us-east-2 rows=2500 median=20a0
kr 20c0-21   us-east-2 rows=2500 median=20e0
`},
	{"single-shard-region-moving-no-median", "", `
drop eu-west-2
kr 20-2080   us-east-1 rows=9000 median=2040 state=moving
kr 2080-21   us-east-2 rows=1000 median=20c0
kr 40-41     eu-west-1 rows=5000 median=4080
kr 60-6080   ap-south-1 rows=1 
kr 6080-61   ap-south-2 rows=3000
`},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			topo, stats := layout(t, tc.spec)
			opts := DefaultOptions()
			opts.Region = tc.region
			p, err := Make(topo, stats, opts)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := p.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".golden", b.String())
			checkInvariants(t, topo, p)

			// The order the statistics arrive in changes nothing.
			shuffled := append([]Stats(nil), stats...)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			q, err := Make(topo, shuffled, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Steps, q.Steps) || !reflect.DeepEqual(p.Balance, q.Balance) {
				t.Fatal("the plan depends on the order of the statistics")
			}
		})
	}
}

// checkInvariants: no step crosses a region, each move goes between two shards of the step's region,
// rows are conserved per region, and the predicted topology validates (Make checks it too).
func checkInvariants(t *testing.T, topo *topology.Topology, p *Plan) {
	t.Helper()
	for i, st := range p.Steps {
		r, _ := topo.Region(st.Region)
		if !r.KeyRange().ContainsRange(st.KeyRange) {
			t.Errorf("step %d: %s is outside region %s", i+1, st.KeyRange, st.Region)
		}
		src, _ := p.After.Shard(st.Shard)
		if src.Region != st.Region {
			t.Errorf("step %d: source %s is not in %s", i+1, st.Shard, st.Region)
		}
		if st.Kind == KindMove {
			dst, ok := p.After.Shard(st.Target)
			if !ok || dst.Region != st.Region || st.Target == st.Shard {
				t.Errorf("step %d: target %s is not another shard of %s", i+1, st.Target, st.Region)
			}
		}
		if st.Why == "" {
			t.Errorf("step %d has no explanation", i+1)
		}
	}
	rows := map[string][2]int64{}
	for _, b := range p.Balance {
		v := rows[b.Region]
		rows[b.Region] = [2]int64{v[0] + b.Before.Rows, v[1] + b.After.Rows}
	}
	for r, v := range rows {
		if v[0] != v[1] {
			t.Errorf("region %s: %d rows before, %d after", r, v[0], v[1])
		}
	}
	if err := p.After.Validate(); err != nil {
		t.Error(err)
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs; if the change is meant, rerun with -update and review the diff.\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestMakeRefuses(t *testing.T) {
	topo, stats := layout(t, `
kr 20-2080 us-east-1 rows=10
kr 2080-21 us-east-2 rows=10
`)
	bad := func(f func([]Stats) []Stats) []Stats { return f(append([]Stats(nil), stats...)) }
	for _, tc := range []struct {
		name  string
		stats []Stats
		opts  func(*Options)
		want  error
	}{
		{"split share 0", stats, func(o *Options) { o.SplitShare = 0 }, ErrInvalidOptions},
		{"split share above 1", stats, func(o *Options) { o.SplitShare = 1.5 }, ErrInvalidOptions},
		{"negative excess", stats, func(o *Options) { o.MoveExcess = -0.1 }, ErrInvalidOptions},
		{"no steps", stats, func(o *Options) { o.MaxSteps = 0 }, ErrInvalidOptions},
		{"unknown region", stats, func(o *Options) { o.Region = "mars" }, ErrInvalidOptions},
		{"missing", bad(func(s []Stats) []Stats { return s[1:] }), nil, ErrStats},
		{"twice", bad(func(s []Stats) []Stats { return append(s, s[0]) }), nil, ErrStats},
		{"wrong shard", bad(func(s []Stats) []Stats { s[0].Shard = "us-east-2"; return s }), nil, ErrStats},
		{"not an assignment", bad(func(s []Stats) []Stats { s[0].KeyRange = shardkey.MustParseKeyRange("20-2040"); return s }), nil, ErrStats},
		{"negative", bad(func(s []Stats) []Stats { s[0].Rows = -1; return s }), nil, ErrStats},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			if _, err := Make(topo, tc.stats, opts); !errors.Is(err, tc.want) {
				t.Fatalf("Make: %v, want %v", err, tc.want)
			}
		})
	}
	// Statistics of other regions are not needed when one region is planned.
	opts := DefaultOptions()
	opts.Region = "us-east"
	if _, err := Make(topo, stats[:2], opts); err != nil {
		t.Fatalf("one region: %v", err)
	}
}

func TestMaxSteps(t *testing.T) {
	topo, stats := layout(t, goldenCases[3].spec)
	opts := DefaultOptions()
	opts.Region, opts.MaxSteps = "us-east", 1
	p, err := Make(topo, stats, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 1 || !strings.Contains(strings.Join(p.Notes, "\n"), "limit of 1 steps") {
		t.Fatalf("steps %d, notes %q", len(p.Steps), p.Notes)
	}
}

func TestSplitPoint(t *testing.T) {
	kr := shardkey.MustParseKeyRange
	for _, tc := range []struct {
		name          string
		kr            string
		below, median string // 16 hex digits
		want          string // bound hex, "" for none
	}{
		{"one byte is enough", "20-21", "2012000000000000", "2037a1b2c3d4e5f6", "2037"},
		{"needs more bytes", "20-21", "2037a1b2c3d40000", "2037a1b2c3d4e5f6", "2037a1b2c3d4e5"},
		{"whole ksid", "20-21", "2037a1b2c3d4e5f5", "2037a1b2c3d4e5f6", "2037a1b2c3d4e5f6"},
		{"below is the start", "20-2080", "2000000000000000", "2000000000000001", "2000000000000001"},
		{"median on the start", "20-2080", "2000000000000000", "2000000000000000", ""},
		{"many rows on the median ksid", "20-21", "2037a1b2c3d4e5f6", "2037a1b2c3d4e5f6", "2037a1b2c3d4e5f6"},
		{"keeps above the start", "2040-2080", "2040000000000000", "2041000000000000", "2041"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			below, err := shardkey.ParseKeyspaceID(tc.below)
			if err != nil {
				t.Fatal(err)
			}
			median, err := shardkey.ParseKeyspaceID(tc.median)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := SplitPoint(kr(tc.kr), below, median)
			if tc.want == "" {
				if ok {
					t.Fatalf("got %s, want none", got)
				}
				return
			}
			if !ok || boundHex(got) != tc.want {
				t.Fatalf("got %s (%v), want %s", boundHex(got), ok, tc.want)
			}
			if (below < median && uint64(got) <= uint64(below)) || uint64(got) > uint64(median) {
				t.Fatalf("%s is not in (%s, %s]", got, below, median)
			}
		})
	}
}
