package collect

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/deploy/local/fixture"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/plan"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixedRequests map[shardkey.KeyRange]int64

func (f fixedRequests) Requests(context.Context, *topology.Topology) (map[shardkey.KeyRange]int64, error) {
	return f, nil
}

// seed puts n users and a settings row for every other one on the shard, with ksids spread over
// region 20 by md5.
func seed(t *testing.T, dsn string, n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region)
		SELECT decode('20' || substr(md5(g::text), 1, 14), 'hex'), decode(lpad(to_hex(g), 40, '0'), 'hex'),
		       'u' || g || '@example.test', 'u' || g || '@example.test', 'User ' || g, 'client', 'us-east'
		  FROM generate_series(1, $1::int) g`, n); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO core.settings (ksid, user_id) SELECT ksid, id FROM auth.users WHERE get_byte(id, 19) % 2 = 0`); err != nil {
		t.Fatal(err)
	}
}

// ksidsIn returns the ksid of every row of the shard in kr, sorted.
func ksidsIn(t *testing.T, dsn string, kr shardkey.KeyRange) []shardkey.KeyspaceID {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT ksid FROM auth.users UNION ALL SELECT ksid FROM core.settings`)
	if err != nil {
		t.Fatal(err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shardkey.KeyspaceID, error) {
		var b []byte
		if err := r.Scan(&b); err != nil {
			return 0, err
		}
		return shardkey.KeyspaceIDFromBytes(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	var in []shardkey.KeyspaceID
	for _, k := range all {
		if kr.Contains(k) {
			in = append(in, k)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i] < in[j] })
	return in
}

func TestCollect(t *testing.T) {
	topo := topology.Example()
	dsn := fixture.Shards(t, topo, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// us-east-1 owns 20-2080; split it in two so one shard has two keyranges, and plant rows of
	// 2080-21 on it too (left over from a move, say): they belong to no keyrange of the shard.
	lo, hi := shardkey.MustParseKeyRange("20-2040"), shardkey.MustParseKeyRange("2040-2080")
	topo.KeyRanges[0] = topology.Assignment{Range: lo, Shard: "us-east-1", State: topology.Serving}
	topo.KeyRanges = append(topo.KeyRanges, topology.Assignment{Range: hi, Shard: "us-east-1", State: topology.Serving})
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	seed(t, dsn["us-east-1"], 3000)
	loKs, hiKs := ksidsIn(t, dsn["us-east-1"], lo), ksidsIn(t, dsn["us-east-1"], hi)

	pools, err := shardpool.New(shardpool.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pools.Close()
	if err := pools.Apply(ctx, topo); err != nil {
		t.Fatal(err)
	}
	stats, err := Collect(ctx, topo, pools.Targets(""), Options{Region: "us-east", Requests: fixedRequests{lo: 7}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[shardkey.KeyRange]plan.Stats{}
	for _, s := range stats {
		got[s.KeyRange] = s
	}
	if len(stats) != 3 {
		t.Fatalf("%d stats, want 3 (us-east only): %+v", len(stats), stats)
	}
	for _, c := range []struct {
		kr    shardkey.KeyRange
		ksids []shardkey.KeyspaceID
	}{{lo, loKs}, {hi, hiKs}} {
		s := got[c.kr]
		if s.Shard != "us-east-1" || s.Rows != int64(len(c.ksids)) {
			t.Errorf("%s: %+v, want %d rows on us-east-1", c.kr, s, len(c.ksids))
		}
		if s.Bytes <= 0 {
			t.Errorf("%s: no bytes", c.kr)
		}
		// The median divides the rows as the median row does: every row before the first row on the
		// median row's ksid goes below (a user's rows share a ksid, so exact halves are not always possible).
		n := len(c.ksids)
		below := sort.Search(n, func(i int) bool { return c.ksids[i] >= s.Median })
		want := sort.Search(n, func(i int) bool { return c.ksids[i] >= c.ksids[n/2] })
		if below != want || s.Median > c.ksids[n/2] || want < n/2-1 {
			t.Errorf("%s: median %s leaves %d of %d rows below it, want %d", c.kr, s.Median, below, n, want)
		}
		if len(s.Median.String()) == 0 || !c.kr.Contains(s.Median) {
			t.Errorf("%s: median %s outside the keyrange", c.kr, s.Median)
		}
	}
	if got[lo].Requests != 7 || got[hi].Requests != 0 {
		t.Errorf("requests: %d %d", got[lo].Requests, got[hi].Requests)
	}
	if e := got[shardkey.MustParseKeyRange("2080-21")]; e.Rows != 0 || e.Median != 0 {
		t.Errorf("empty keyrange: %+v", e)
	}

	// Shard measures one shard alike, without medians.
	for _, tg := range pools.Targets("") {
		if tg.Shard != "us-east-1" {
			continue
		}
		one, err := Shard(ctx, tg, topo.RangesOf(tg.Shard))
		if err != nil {
			t.Fatal(err)
		}
		if len(one) != 2 {
			t.Fatalf("Shard us-east-1: %+v, want its 2 keyranges", one)
		}
		for _, s := range one {
			if w := got[s.KeyRange]; s.Rows != w.Rows || s.Bytes != w.Bytes || s.Median != 0 || s.Shard != "us-east-1" {
				t.Errorf("Shard %s: %+v, want rows %d and bytes %d as Collect, no median", s.KeyRange, s, w.Rows, w.Bytes)
			}
		}
	}

	// A shard that does not answer fails the whole collection, naming it.
	down := topo.Clone()
	down.Shards[1].Conn.Port = 1
	if err := pools.Apply(ctx, down); err != nil {
		t.Fatal(err)
	}
	_, err = Collect(ctx, down, pools.Targets(""), Options{Region: "us-east", PerShardTimeout: 3 * time.Second})
	if !errors.Is(err, ErrShards) || !strings.Contains(err.Error(), "us-east-2") {
		t.Fatalf("a shard down: %v", err)
	}
}
