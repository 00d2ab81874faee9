package embed

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/8thdegree/meridian/deploy/local/testenv"
)

func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// region is a region name of the test's own, so that tests sharing the Redis never share a count.
func region(t *testing.T) string {
	return "test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// clock is a settable now.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.t.Store(&t) }
func (c *clock) now() time.Time   { return *c.t.Load() }

func TestRedisBudgetPerRegionAndDay(t *testing.T) {
	rdb := testRedis(t)
	ctx := context.Background()
	clk := newClock(time.Date(2026, 12, 1, 23, 59, 0, 0, time.FixedZone("UTC+5", 5*3600)))
	eu, us := region(t), region(t)+"-us"
	b := NewRedisBudget(rdb, eu, 100, clk.now)
	other := NewRedisBudget(rdb, us, 100, clk.now)

	mustUse := func(b *RedisBudget, want int) {
		t.Helper()
		if got, err := b.Used(ctx); err != nil || got != want {
			t.Fatalf("Used = %d, %v; want %d", got, err, want)
		}
	}
	if err := b.Reserve(ctx, 60); err != nil {
		t.Fatal(err)
	}
	// 60 + 50 is over 100: refused, and the refusal takes nothing, so 40 still fits.
	if err := b.Reserve(ctx, 50); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("over the budget: %v", err)
	}
	mustUse(b, 60)
	if err := b.Reserve(ctx, 40); err != nil {
		t.Fatalf("what is left: %v", err)
	}
	if err := b.Reserve(ctx, 1); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("a spent budget: %v", err)
	}
	if err := b.Reserve(ctx, 0); err != nil {
		t.Errorf("nothing fits even a spent budget: %v", err)
	}
	mustUse(b, 100)
	// Another region's count is its own.
	if err := other.Reserve(ctx, 100); err != nil {
		t.Fatal(err)
	}
	// The day is the UTC day: 23:59 at UTC+5 is 18:59 UTC on the same date.
	if got, want := b.Key(clk.now()), "meridian:embed:budget:{"+eu+"}:2026-12-01"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
	ttl, err := rdb.TTL(ctx, b.Key(clk.now())).Result()
	if err != nil || ttl <= 47*time.Hour || ttl > budgetTTL {
		t.Errorf("TTL %s, %v; want about %s", ttl, err, budgetTTL)
	}
	// A new UTC day starts from zero.
	clk.set(time.Date(2026, 12, 2, 0, 0, 1, 0, time.UTC))
	mustUse(b, 0)
	if err := b.Reserve(ctx, 100); err != nil {
		t.Fatalf("the next day: %v", err)
	}
	// More than a whole day's budget never fits, and does not reach Redis.
	if err := b.Reserve(ctx, 101); !errors.Is(err, ErrBudgetExhausted) {
		t.Errorf("more than a day: %v", err)
	}
	if err := b.Reserve(ctx, -1); err == nil || errors.Is(err, ErrBudgetExhausted) {
		t.Errorf("negative tokens: %v", err)
	}
	zero := NewRedisBudget(rdb, region(t), 0, nil)
	if err := zero.Reserve(ctx, 1); !errors.Is(err, ErrBudgetExhausted) {
		t.Errorf("a zero budget: %v", err)
	}
}

// Nodes racing for the last tokens never overspend together.
func TestRedisBudgetConcurrentReservations(t *testing.T) {
	rdb := testRedis(t)
	name := region(t)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for range 4 { // four nodes, one budget
		b := NewRedisBudget(rdb, name, 1005, nil)
		for range 10 {
			wg.Go(func() {
				for range 10 {
					switch err := b.Reserve(context.Background(), 3); {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrBudgetExhausted):
						refused.Add(1)
					default:
						t.Error(err)
					}
				}
			})
		}
	}
	wg.Wait()
	if ok.Load() != 335 || refused.Load() != 65 {
		t.Errorf("%d reservations of 3 granted and %d refused from 1005, want 335 and 65", ok.Load(), refused.Load())
	}
	if used, err := NewRedisBudget(rdb, name, 1005, nil).Used(context.Background()); err != nil || used != 1005 {
		t.Errorf("used %d, %v", used, err)
	}
}

// deadRedis is a client of an address nothing listens on.
func deadRedis(t *testing.T) *redis.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Without Redis the budget cannot be checked: the embedder sends nothing and says "try later".
func TestBudgetRefusalsSendNothing(t *testing.T) {
	f := newFakeAPI(t, 0)
	ctx := context.Background()

	down := NewRedisBudget(deadRedis(t), "eu-west", 1000, nil)
	if err := down.Reserve(ctx, 1); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := down.Used(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Used with Redis down: %v", err)
	}
	o := newTestOpenAI(t, testConfig(f), nil, down)
	if _, err := o.Embed(ctx, []string{"go developer"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Embed with Redis down: %v", err)
	}

	rdb := testRedis(t)
	small := NewRedisBudget(rdb, region(t), 30, nil)
	o = newTestOpenAI(t, testConfig(f), nil, small)
	// Four texts of 12 tokens each are more than 30: the whole call is refused.
	in := texts(4)
	if EstimateTokens(in[0]) != 12 {
		t.Fatalf("the test texts are %d tokens", EstimateTokens(in[0]))
	}
	if _, err := o.Embed(ctx, in); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("over budget: %v", err)
	}
	if len(f.got()) != 0 {
		t.Fatalf("%d requests sent without budget", len(f.got()))
	}
	if s := o.Stats(); s.BudgetRefusals != 1 || s.Failures != 1 || s.Requests != 0 {
		t.Errorf("stats %+v", s)
	}
	// Two of them fit; the count is what was reserved.
	if _, err := o.Embed(ctx, in[:2]); err != nil {
		t.Fatal(err)
	}
	want := EstimateTokens(in[0]) + EstimateTokens(in[1])
	if used, err := small.Used(ctx); err != nil || used != want {
		t.Errorf("used %d, %v; want %d", used, err, want)
	}
}
