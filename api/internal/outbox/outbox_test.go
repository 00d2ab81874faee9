package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/8thdegree/meridian/api/internal/apitest"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/deploy/local/testenv"
	"github.com/8thdegree/meridian/internal/tokenissue"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testConfig retries quickly, so that a test waits for retries in milliseconds.
func testConfig() Config {
	c := DefaultConfig()
	c.Poll = 20 * time.Millisecond
	c.BaseBackoff = 10 * time.Millisecond
	c.MaxBackoff = 50 * time.Millisecond
	c.Lease = 5 * time.Second
	c.SendTimeout = 2 * time.Second
	return c
}

// recorder is a receiving handler that counts the keys it applied (and can be made to fail).
type recorder struct {
	mu    sync.Mutex
	got   map[string][]Delivery
	fail  atomic.Bool
	calls atomic.Int64
}

func newRecorder() *recorder { return &recorder{got: map[string][]Delivery{}} }

func (r *recorder) handle(ctx context.Context, tx pgx.Tx, d Delivery) error {
	r.calls.Add(1)
	if r.fail.Load() {
		return errors.New("the handler is failing")
	}
	// A real write in the receiving transaction: the handler runs on the receiver's shard.
	if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[d.Key] = append(r.got[d.Key], d)
	return nil
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got[key])
}

const kind = "test.note"

// env is the three-region harness with an outbox on every node and a recorder for kind on each.
type env struct {
	h   *apitest.Harness
	obs map[string]*Outbox
	rec map[string]*recorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{obs: map[string]*Outbox{}, rec: map[string]*recorder{}}
	e.h = apitest.New(t, apitest.Options{Routes: func(a *feature.Deps, _ *tokenissue.Issuer) []feature.Route {
		ob, err := New(a, testConfig())
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		if err := ob.Handle(kind, rec.handle); err != nil {
			t.Fatal(err)
		}
		e.obs[a.Region], e.rec[a.Region] = ob, rec
		return ob.Routes()
	}})
	return e
}

// run runs ob's delivery task until the test ends.
func run(t *testing.T, ob *Outbox) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the delivery task ended with %v", err)
		}
	})
}

func (e *env) ksid(t *testing.T, region, name string) shardkey.KeyspaceID {
	t.Helper()
	r, ok := e.h.Topology.Region(region)
	if !ok {
		t.Fatalf("no region %s", region)
	}
	return shardkey.NewKeyspaceID(r.Code, []byte(fmt.Sprintf("%s-%s-%d", t.Name(), name, time.Now().UnixNano())))
}

// enqueue commits m (with a business write beside it) on the shard of m.KSID, from region's node.
func (e *env) enqueue(t *testing.T, region string, m Message) {
	t.Helper()
	if err := e.enqueueTx(region, m, true); err != nil {
		t.Fatal(err)
	}
}

var errRollback = errors.New("rolled back on purpose")

func (e *env) enqueueTx(region string, m Message, commit bool) error {
	ob := e.obs[region]
	ctx := context.Background()
	routed, err := ob.a.WriteShard(ctx, m.KSID)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		if err := ob.Enqueue(ctx, tx, m); err != nil {
			return err
		}
		if !commit {
			return errRollback
		}
		return nil
	})
	if !commit && errors.Is(err, errRollback) {
		return nil
	}
	return err
}

// row is an outbox row's delivery state.
type row struct {
	attempts  int
	lastError *string
	delivered bool
}

func (e *env) row(t *testing.T, m Message) (row, bool) {
	t.Helper()
	routed, err := e.h.Pools.Route(m.KSID)
	if err != nil {
		t.Fatal(err)
	}
	var r row
	err = routed.Pool.QueryRow(context.Background(), `SELECT attempts, last_error, delivered_at IS NOT NULL FROM core.outbox
		WHERE ksid = $1 AND idempotency_key = $2`, m.KSID.Bytes(), m.Key).Scan(&r.attempts, &r.lastError, &r.delivered)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return r, true
}

func (e *env) inboxHas(t *testing.T, to shardkey.KeyspaceID, key string) bool {
	t.Helper()
	routed, err := e.h.Pools.Route(to)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := routed.Pool.QueryRow(context.Background(), `SELECT count(*) FROM core.inbox WHERE ksid = $1 AND idempotency_key = $2`,
		to.Bytes(), key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// eventually waits (up to a generous bound) for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeliveredOnceToAnotherRegion(t *testing.T) {
	e := newEnv(t)
	run(t, e.obs["us-east"])
	m := Message{KSID: e.ksid(t, "us-east", "owner"), To: e.ksid(t, "eu-west", "other"), Kind: kind, Key: "contract-1:started",
		Payload: map[string]any{"contract": "c1", "status": "active"}}
	e.enqueue(t, "us-east", m)
	rec := e.rec["eu-west"]
	eventually(t, "delivery to eu-west", func() bool { r, _ := e.row(t, m); return r.delivered })
	if n := rec.count(m.Key); n != 1 {
		t.Fatalf("eu-west applied the message %d times, want 1", n)
	}
	d := rec.got[m.Key][0]
	var p map[string]string
	if err := json.Unmarshal(d.Payload, &p); err != nil || p["contract"] != "c1" || p["status"] != "active" {
		t.Fatalf("payload %s (%v)", d.Payload, err)
	}
	if d.From != "us-east" || d.To != m.To || d.Kind != kind {
		t.Fatalf("delivery %+v", d)
	}
	if !e.inboxHas(t, m.To, m.Key) {
		t.Fatal("no inbox row on the receiver's shard")
	}
	if r, _ := e.row(t, m); r.attempts != 1 || r.lastError != nil {
		t.Fatalf("row %+v, want one clean attempt", r)
	}
	if e.rec["us-east"].count(m.Key)+e.rec["ap-south"].count(m.Key) != 0 {
		t.Fatal("another region applied the message")
	}
	if got := value(t, e.obs["us-east"].metrics.delivered.WithLabelValues(kind)); got != 1 {
		t.Fatalf("delivered metric %v, want 1", got)
	}
	// Enqueueing the same key again for the same owner keeps the one (delivered) row.
	e.enqueue(t, "us-east", m)
	if r, ok := e.row(t, m); !ok || !r.delivered {
		t.Fatalf("re-enqueued key: row %+v %v", r, ok)
	}
}

func TestRetriedUntilTheRegionReturns(t *testing.T) {
	e := newEnv(t)
	rec := e.rec["eu-west"]
	rec.fail.Store(true)
	run(t, e.obs["us-east"])
	m := Message{KSID: e.ksid(t, "us-east", "owner"), To: e.ksid(t, "eu-west", "other"), Kind: kind, Key: "k-retry", Payload: map[string]int{"n": 1}}
	e.enqueue(t, "us-east", m)
	eventually(t, "three failed attempts", func() bool { r, _ := e.row(t, m); return r.attempts >= 3 })
	r, _ := e.row(t, m)
	if r.delivered || r.lastError == nil || *r.lastError == "" {
		t.Fatalf("while eu-west fails: row %+v, want undelivered with the last error", r)
	}
	if rec.count(m.Key) != 0 || e.inboxHas(t, m.To, m.Key) {
		t.Fatal("a failed attempt left an effect")
	}
	if got := value(t, e.obs["us-east"].metrics.failed.WithLabelValues(kind)); got < 2 {
		t.Fatalf("failed-attempt metric %v, want at least 2", got)
	}
	rec.fail.Store(false)
	eventually(t, "delivery after eu-west returns", func() bool { r, _ := e.row(t, m); return r.delivered })
	if n := rec.count(m.Key); n != 1 {
		t.Fatalf("applied %d times, want 1", n)
	}
	if r, _ := e.row(t, m); r.lastError != nil {
		t.Fatalf("last_error %q kept after the delivery", *r.lastError)
	}
}

// A kind the destination does not handle yet (its nodes run an older version) waits for it.
func TestUnknownKindWaitsForItsHandler(t *testing.T) {
	e := newEnv(t)
	run(t, e.obs["us-east"])
	m := Message{KSID: e.ksid(t, "us-east", "owner"), To: e.ksid(t, "ap-south", "other"), Kind: "test.later", Key: "k-later"}
	e.enqueue(t, "us-east", m)
	eventually(t, "two refused attempts", func() bool { r, _ := e.row(t, m); return r.attempts >= 2 })
	if r, _ := e.row(t, m); r.delivered {
		t.Fatal("delivered to a region with no handler")
	}
	later := newRecorder()
	if err := e.obs["ap-south"].Handle("test.later", later.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery once the handler exists", func() bool { r, _ := e.row(t, m); return r.delivered })
	if later.count(m.Key) != 1 {
		t.Fatalf("applied %d times", later.count(m.Key))
	}
}

func TestRedeliveryChangesNothing(t *testing.T) {
	e := newEnv(t)
	rec := e.rec["eu-west"]
	to := e.ksid(t, "eu-west", "other")
	body := map[string]any{"kind": kind, "key": "k-dup", "to": to.String(), "from": "us-east", "payload": map[string]any{"v": 1}}
	path := feature.InternalPath(DeliverPath)
	for i, want := range []string{"applied", "duplicate", "duplicate"} {
		resp := e.h.Do(t, "eu-west", apitest.Request{Method: http.MethodPost, Path: path, Body: body, AsNode: "us-east"})
		if resp.Status != http.StatusOK || resp.Map(t)["status"] != want {
			t.Fatalf("delivery %d: %d %s, want 200 %s", i, resp.Status, resp.Body, want)
		}
	}
	if rec.count("k-dup") != 1 || rec.calls.Load() != 1 {
		t.Fatalf("applied %d times (%d calls), want once", rec.count("k-dup"), rec.calls.Load())
	}
	if got := value(t, e.obs["eu-west"].metrics.duplicates.WithLabelValues(kind)); got != 2 {
		t.Fatalf("duplicates metric %v, want 2", got)
	}

	// The outbox sending a delivered message again (its acknowledgement lost) changes nothing either.
	run(t, e.obs["us-east"])
	m := Message{KSID: e.ksid(t, "us-east", "owner"), To: to, Kind: kind, Key: "k-resend"}
	e.enqueue(t, "us-east", m)
	eventually(t, "first delivery", func() bool { r, _ := e.row(t, m); return r.delivered })
	routed, _ := e.h.Pools.Route(m.KSID)
	if _, err := routed.Pool.Exec(context.Background(), `UPDATE core.outbox SET delivered_at = NULL, next_attempt_at = now()
		WHERE ksid = $1 AND idempotency_key = $2`, m.KSID.Bytes(), m.Key); err != nil {
		t.Fatal(err)
	}
	e.obs["us-east"].Wake()
	eventually(t, "second delivery", func() bool { r, _ := e.row(t, m); return r.delivered && r.attempts == 2 })
	if rec.count(m.Key) != 1 {
		t.Fatalf("a resent message was applied %d times", rec.count(m.Key))
	}

	// Bad input is refused and changes nothing; only nodes may call the route.
	calls := rec.calls.Load()
	for _, bad := range []map[string]any{
		{"kind": "Bad Kind", "key": "k", "to": to.String(), "from": "us-east", "payload": map[string]any{}},
		{"kind": kind, "key": "", "to": to.String(), "from": "us-east", "payload": map[string]any{}},
		{"kind": kind, "key": "k", "to": to.String(), "from": "us-east", "payload": []int{1}},
		{"kind": kind, "key": "k", "to": "nothex", "from": "us-east", "payload": map[string]any{}},
	} {
		if resp := e.h.Do(t, "eu-west", apitest.Request{Method: http.MethodPost, Path: path, Body: bad, AsNode: "us-east"}); resp.Status != http.StatusBadRequest {
			t.Errorf("%v: %d %s, want 400", bad, resp.Status, resp.Body)
		}
	}
	if resp := e.h.Do(t, "eu-west", apitest.Request{Method: http.MethodPost, Path: path, Body: body}); resp.Status/100 != 4 {
		t.Errorf("a router's call of the internal route: %d, want refused", resp.Status)
	}
	if rec.calls.Load() != calls {
		t.Fatal("refused input reached the handler")
	}
}

// Two delivery loops of one region (two nodes) share its shards: each message is claimed, and sent,
// by one of them once. Half the messages go to another region, half to a local topic.
func TestTwoLoopsNeverDeliverTwice(t *testing.T) {
	e := newEnv(t)
	second, err := New(e.obs["us-east"].a, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Handle(kind, e.rec["us-east"].handle); err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	for i := range 120 {
		dest := "eu-west"
		if i%2 == 0 {
			dest = "us-east"
		}
		msgs = append(msgs, Message{KSID: e.ksid(t, "us-east", fmt.Sprint("owner", i%7)), To: e.ksid(t, dest, fmt.Sprint("to", i)),
			Kind: kind, Key: fmt.Sprint("k", i)})
	}
	for _, m := range msgs {
		e.enqueue(t, "us-east", m)
	}
	run(t, e.obs["us-east"])
	run(t, second)
	for _, m := range msgs {
		eventually(t, "delivery of "+m.Key, func() bool { r, _ := e.row(t, m); return r.delivered })
	}
	for _, m := range msgs {
		r, _ := e.row(t, m)
		if r.attempts != 1 {
			t.Errorf("%s was claimed %d times", m.Key, r.attempts)
		}
		n := e.rec["us-east"].count(m.Key) + e.rec["eu-west"].count(m.Key)
		if n != 1 {
			t.Errorf("%s applied %d times", m.Key, n)
		}
	}
	var dups float64
	for _, ob := range []*Outbox{e.obs["us-east"], second, e.obs["eu-west"]} {
		dups += value(t, ob.metrics.duplicates.WithLabelValues(kind))
	}
	if dups != 0 {
		t.Fatalf("%v messages arrived twice", dups)
	}
}

func TestRolledBackEnqueueSendsNothing(t *testing.T) {
	e := newEnv(t)
	run(t, e.obs["us-east"])
	owner := e.ksid(t, "us-east", "owner")
	gone := Message{KSID: owner, To: e.ksid(t, "eu-west", "a"), Kind: kind, Key: "k-rolled-back"}
	if err := e.enqueueTx("us-east", gone, false); err != nil {
		t.Fatal(err)
	}
	kept := Message{KSID: owner, To: e.ksid(t, "eu-west", "b"), Kind: kind, Key: "k-committed"}
	e.enqueue(t, "us-east", kept)
	eventually(t, "the committed message", func() bool { r, _ := e.row(t, kept); return r.delivered })
	if _, ok := e.row(t, gone); ok {
		t.Fatal("a rolled-back enqueue left a row")
	}
	if e.rec["eu-west"].count(gone.Key) != 0 || e.inboxHas(t, gone.To, gone.Key) {
		t.Fatal("a rolled-back enqueue was delivered")
	}
}

func TestEnqueueRefusesBadMessages(t *testing.T) {
	e := newEnv(t)
	owner := e.ksid(t, "us-east", "owner")
	to := e.ksid(t, "eu-west", "to")
	for _, m := range []Message{
		{KSID: owner, To: to, Kind: "", Key: "k"},
		{KSID: owner, To: to, Kind: kind, Key: ""},
		{KSID: owner, To: to, Kind: kind, Key: "k", Payload: []int{1}},
		{KSID: owner, To: shardkey.NewKeyspaceID(0x99, []byte("nowhere")), Kind: kind, Key: "k"},
	} {
		if err := e.enqueueTx("us-east", m, true); err == nil {
			t.Errorf("%+v was enqueued", m)
		}
	}
}

func TestBackoff(t *testing.T) {
	o := &Outbox{cfg: DefaultConfig()}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 9: 256 * time.Second,
		10: 5 * time.Minute, 40: 5 * time.Minute, 1000: 5 * time.Minute} {
		for range 50 {
			if d := o.backoff(attempts); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempts, d, want/2, want)
			}
		}
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("an empty config is valid")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// value reads a counter's current value.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Attempts queued behind slow ones are handed back before they could outlast their claim's lease,
// when another node could claim them too; each message is still applied once.
func TestSlowAttemptsHandClaimsBack(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.Lease, cfg.SendTimeout, cfg.Concurrency = time.Second, 500*time.Millisecond, 1
	sender, err := New(e.obs["us-east"].a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	slow := newRecorder()
	if err := e.obs["eu-west"].Handle("test.slow", func(ctx context.Context, tx pgx.Tx, d Delivery) error {
		time.Sleep(300 * time.Millisecond)
		return slow.handle(ctx, tx, d)
	}); err != nil {
		t.Fatal(err)
	}
	owner := e.ksid(t, "us-east", "owner")
	var msgs []Message
	for i := range 5 {
		m := Message{KSID: owner, To: e.ksid(t, "eu-west", fmt.Sprint("to", i)), Kind: "test.slow", Key: fmt.Sprint("slow", i)}
		e.enqueue(t, "us-east", m)
		msgs = append(msgs, m)
	}
	run(t, sender)
	reclaimed := 0
	for _, m := range msgs {
		eventually(t, "delivery of "+m.Key, func() bool { r, _ := e.row(t, m); return r.delivered })
		if r, _ := e.row(t, m); r.attempts > 1 {
			reclaimed++
		}
		if n := slow.count(m.Key); n != 1 {
			t.Errorf("%s applied %d times", m.Key, n)
		}
	}
	if reclaimed == 0 {
		t.Error("no claim was handed back, though the fifth attempt waited for four slow ones")
	}
	if d := value(t, e.obs["eu-west"].metrics.duplicates.WithLabelValues("test.slow")); d != 0 {
		t.Fatalf("%v messages arrived twice", d)
	}
}

// A receiver pinned to another region after the message was enqueued is reached where it lives now:
// the destination is looked up again at delivery, and the inbox row goes under the receiver's new
// ksid on its new shard (where every row of the owner lives).
func TestDeliveredWhereAPinnedReceiverLivesNow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := e.ksid(t, "eu-west", "pinned")
	ap, _ := e.h.Topology.Region("ap-south")
	moved := old.WithRegion(ap.Code)
	m := Message{KSID: e.ksid(t, "us-east", "owner"), To: old, Kind: kind, Key: "to-a-pinned-user"}
	e.enqueue(t, "us-east", m) // addressed to eu-west, where the receiver lives at enqueue

	pinned := e.h.Topology.Clone()
	pinned.Version++
	pinned.Relocations = append(pinned.Relocations, topology.Relocation{From: old, To: moved})
	if err := e.h.Pools.Apply(ctx, pinned); err != nil {
		t.Fatal(err)
	}
	run(t, e.obs["us-east"])
	eventually(t, "delivery to ap-south", func() bool { r, _ := e.row(t, m); return r.delivered })
	if n := e.rec["ap-south"].count(m.Key); n != 1 {
		t.Fatalf("ap-south applied the message %d times, want 1", n)
	}
	if n := e.rec["eu-west"].count(m.Key); n != 0 {
		t.Fatalf("eu-west, where the receiver lived, applied it %d times", n)
	}
	if d := e.rec["ap-south"].got[m.Key][0]; d.To != moved {
		t.Fatalf("the handler got To %s, want the receiver's ksid now, %s", d.To, moved)
	}
	// Inbox rows under the new ksid only (the old one has no shard any more: it routes to the new).
	sh, err := e.h.Pools.Route(moved)
	if err != nil {
		t.Fatal(err)
	}
	under := map[string]int{}
	rows, err := sh.Pool.Query(ctx, `SELECT encode(ksid, 'hex'), count(*) FROM core.inbox WHERE idempotency_key = $1 GROUP BY 1`, m.Key)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		under[k] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(under) != 1 || under[moved.String()] != 1 {
		t.Fatalf("inbox rows by ksid %v, want one under %s", under, moved)
	}
}
