// Package outbox is the node's durable outbox: a feature that must tell another owner about a business
// write (the other party of a contract in another region, a shard's matching work) enqueues a message in
// the transaction of that write; the delivery task of every node of the region sends due messages to
// their destination — a handler of this node for this region, a peer node's internal route for another
// region — and retries with exponential backoff until one is acknowledged. The receiving side applies a
// message in a transaction that also records its idempotency key in core.inbox, so delivery is at
// least once and the effect exactly once. docs/outbox.md has the design and the failure cases.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// DeliverPath is the internal route that receives other regions' messages.
const DeliverPath = "/internal/outbox/deliver"

// Config tunes delivery and retention.
type Config struct {
	// Poll is how often the delivery task looks for due messages when nothing woke it.
	Poll time.Duration
	// Batch bounds the messages one shard hands out per claim.
	Batch int
	// Lease is how long a claimed message is withheld from other nodes while it is being sent; a node
	// that dies mid-send leaves it to be retried after the lease. Must exceed SendTimeout.
	Lease time.Duration
	// SendTimeout bounds one delivery attempt.
	SendTimeout time.Duration
	// Concurrency bounds the attempts in flight on one node.
	Concurrency int
	// BaseBackoff is the wait after the first failed attempt; it doubles with each further failure, up
	// to MaxBackoff, and the actual wait is drawn between half of it and all of it (jitter).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// Retention is how long a delivered message is kept (for inspection) before the task deletes it.
	Retention time.Duration
	// InboxRetention is how long a received key is kept: a redelivery later than that would be applied
	// again, so it must far exceed any redelivery window (an acknowledgement lost, then the sender's
	// region down).
	InboxRetention time.Duration
	// Cleanup is how often the task deletes expired rows and refreshes the pending gauge.
	Cleanup time.Duration
}

// DefaultConfig is the production configuration.
func DefaultConfig() Config {
	return Config{Poll: time.Second, Batch: 100, Lease: 30 * time.Second, SendTimeout: 10 * time.Second, Concurrency: 8,
		BaseBackoff: time.Second, MaxBackoff: 5 * time.Minute, Retention: 7 * 24 * time.Hour, InboxRetention: 30 * 24 * time.Hour,
		Cleanup: time.Minute}
}

// Validate reports a configuration the task cannot run with.
func (c Config) Validate() error {
	switch {
	case c.Poll <= 0 || c.Batch <= 0 || c.Concurrency <= 0 || c.Cleanup <= 0:
		return errors.New("outbox: Poll, Batch, Concurrency and Cleanup must be positive")
	case c.SendTimeout <= 0 || c.Lease <= c.SendTimeout:
		return errors.New("outbox: Lease must exceed a positive SendTimeout")
	case c.BaseBackoff <= 0 || c.MaxBackoff < c.BaseBackoff:
		return errors.New("outbox: need 0 < BaseBackoff <= MaxBackoff")
	case c.Retention <= 0 || c.InboxRetention < c.Retention:
		return errors.New("outbox: need 0 < Retention <= InboxRetention")
	}
	return nil
}

// Message is what a feature enqueues.
type Message struct {
	// KSID is the owner of the business write: the message is stored, and moves, with its rows.
	KSID shardkey.KeyspaceID
	// To is the receiving owner (or a per-shard key); its home region is the destination, and the
	// receiver applies the message on its shard.
	To shardkey.KeyspaceID
	// Kind names the handler that applies it (lower case, dots and underscores: hiring.contract_started).
	Kind string
	// Key identifies the effect: a message with a key the receiver has applied for To changes nothing.
	// Enqueueing a key the sender already holds for KSID is a no-op too.
	Key string
	// Payload is encoded as JSON (an object).
	Payload any
}

// Delivery is a message as its handler receives it.
type Delivery struct {
	Kind    string              `json:"kind"`
	Key     string              `json:"key"`
	To      shardkey.KeyspaceID `json:"to"`
	From    string              `json:"from"` // the sending region
	Payload json.RawMessage     `json:"payload"`
}

// Handler applies a delivery inside tx, the transaction on the shard of d.To that also records d.Key in
// the inbox: an error rolls both back and the sender retries. An *apierror.Error goes back to the
// sender as such (and is retried like any failure).
// Validate implements rest.Validator for the internal route.
func (d *Delivery) Validate() map[string]string {
	bad := map[string]string{}
	if !kindPattern.MatchString(d.Kind) {
		bad["kind"] = "must be lower case letters, digits, dots and underscores, 1 to 64"
	}
	if d.Key == "" || len(d.Key) > maxKeyBytes {
		bad["key"] = fmt.Sprintf("must be 1 to %d bytes", maxKeyBytes)
	}
	if !regionPattern.MatchString(d.From) {
		bad["from"] = "must be a region name"
	}
	if len(d.Payload) == 0 || d.Payload[0] != '{' {
		bad["payload"] = "must be a JSON object"
	}
	return bad
}

type Handler func(ctx context.Context, tx pgx.Tx, d Delivery) error

var (
	kindPattern   = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,63}$`)
	regionPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)
	maxKeyBytes   = 200
	errNoHandlers = errors.New("outbox: no handler for the kind")
)

// Outbox is one node's outbox: Enqueue, the delivery task, the receiving route and their metrics.
type Outbox struct {
	a       *feature.Deps
	cfg     Config
	metrics *Metrics
	wake    chan struct{}

	mu       sync.RWMutex
	handlers map[string]Handler
}

// New returns the outbox of the node a.
func New(a *feature.Deps, cfg Config) (*Outbox, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Outbox{a: a, cfg: cfg, metrics: newMetrics(), wake: make(chan struct{}, 1), handlers: map[string]Handler{}}, nil
}

// Handle registers the handler of kind, which this node applies when a message of that kind arrives
// (from this region's outbox or another's). Every node of every region that may receive the kind must
// register it; a message of an unknown kind is refused and retried until one does.
func (o *Outbox) Handle(kind string, h Handler) error {
	if !kindPattern.MatchString(kind) {
		return fmt.Errorf("outbox: bad kind %q", kind)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, dup := o.handlers[kind]; dup {
		return fmt.Errorf("outbox: kind %q already has a handler", kind)
	}
	o.handlers[kind] = h
	return nil
}

func (o *Outbox) handler(kind string) (Handler, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	h, ok := o.handlers[kind]
	return h, ok
}

// Enqueue stores m in tx, the transaction of the business write, which must run on the shard of m.KSID:
// the message exists if and only if the write commits. The delivery task of this node is woken (it also
// polls, and any node of the region may send the message).
func (o *Outbox) Enqueue(ctx context.Context, tx pgx.Tx, m Message) error {
	if !kindPattern.MatchString(m.Kind) {
		return fmt.Errorf("outbox: bad kind %q", m.Kind)
	}
	if m.Key == "" || len(m.Key) > maxKeyBytes {
		return fmt.Errorf("outbox: the idempotency key must be 1 to %d bytes", maxKeyBytes)
	}
	dest, err := o.regionOf(m.To)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(m.Payload)
	if err != nil {
		return fmt.Errorf("outbox: payload: %w", err)
	}
	if m.Payload == nil {
		payload = []byte("{}")
	}
	if payload[0] != '{' {
		return errors.New("outbox: the payload must encode as a JSON object")
	}
	if _, err := tx.Exec(ctx, `INSERT INTO core.outbox (ksid, destination, target_ksid, kind, idempotency_key, payload)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ksid, idempotency_key) DO NOTHING`,
		m.KSID.Bytes(), dest, m.To.Bytes(), m.Kind, m.Key, payload); err != nil {
		return fmt.Errorf("outbox: enqueue: %w", err)
	}
	o.Wake()
	return nil
}

// Wake makes the delivery task look for due messages now (Enqueue calls it; a caller whose transaction
// commits later may call it again after the commit).
func (o *Outbox) Wake() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// regionOf names the region that holds k's data in the topology in force: the relocation map first
// (a user pinned to another region keeps the IDs, and so the ksid, others address them by), then the
// region its code names.
func (o *Outbox) regionOf(k shardkey.KeyspaceID) (string, error) {
	tab := o.a.Topology()
	if tab == nil {
		return "", apierror.Unavailable("the topology is not loaded yet", time.Second)
	}
	r, ok := tab.Topology().RegionByCode(tab.Resolve(k).Region())
	if !ok {
		return "", fmt.Errorf("outbox: ksid %s is in no region of the topology", k)
	}
	return r.Name, nil
}

// Receive applies d on the shard of d.To, unless its key is already in the inbox; duplicate says which.
// It is what the internal route runs, and what the delivery task runs for this region's messages.
func (o *Outbox) Receive(ctx context.Context, d Delivery) (duplicate bool, err error) {
	h, ok := o.handler(d.Kind)
	if !ok {
		return false, apierror.BadRequest("no handler for the message kind " + d.Kind).WithCause(errNoHandlers)
	}
	routed, err := o.a.WriteShard(ctx, d.To)
	if err != nil {
		return false, err
	}
	// The receiver's ksid now (after a pin): the inbox row and the handler's writes go under it, as
	// every row of the owner on this shard does.
	d.To = routed.Route.KeyspaceID
	err = pgx.BeginFunc(ctx, routed.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO core.inbox (ksid, idempotency_key, kind, source) VALUES ($1, $2, $3, $4)
			ON CONFLICT (ksid, idempotency_key) DO NOTHING`, d.To.Bytes(), d.Key, d.Kind, d.From)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			duplicate = true
			return nil
		}
		return h(ctx, tx, d)
	})
	if err != nil {
		return false, err
	}
	if duplicate {
		o.metrics.duplicates.WithLabelValues(d.Kind).Inc()
	} else {
		o.metrics.applied.WithLabelValues(d.Kind).Inc()
	}
	return duplicate, nil
}

// Routes is the internal route through which other regions' nodes deliver.
func (o *Outbox) Routes() []feature.Route {
	return []feature.Route{{
		Name: "internalOutboxDeliver", Method: http.MethodPost, Path: DeliverPath, Access: feature.Internal,
		Handler: o.handleDeliver,
		Doc: map[string]any{
			"summary":     "Apply another region's outbox message",
			"description": "Node-to-node only. Runs the message kind's handler on the receiving owner's shard in a transaction that records the idempotency key; a key already recorded changes nothing.",
			"tags":        []string{"internal"},
			"x-internal":  true,
		},
	}}
}

type deliverAnswer struct {
	Status string `json:"status"` // applied or duplicate
}

func (o *Outbox) handleDeliver(w http.ResponseWriter, r *http.Request) error {
	var d Delivery
	if err := rest.Decode(w, r, &d); err != nil {
		return err
	}
	dup, err := o.Receive(r.Context(), d)
	if err != nil {
		if rest.Public(err).Status == http.StatusInternalServerError && r.Context().Err() == nil {
			// A handler's or the shard's failure: the sender retries later.
			return apierror.Unavailable("the message could not be applied; retry later", 5*time.Second).WithCause(err)
		}
		return err
	}
	ans := deliverAnswer{Status: "applied"}
	if dup {
		ans.Status = "duplicate"
	}
	rest.WriteJSON(w, http.StatusOK, ans)
	return nil
}
