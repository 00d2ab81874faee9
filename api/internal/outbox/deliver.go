package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// Task is the node's delivery task: every node of a region runs one, and they share the region's
// messages through FOR UPDATE SKIP LOCKED and the claim's lease.
func (o *Outbox) Task() feature.Task { return feature.Task{Name: "outbox", Run: o.Run} }

// Run delivers due messages of this region's shards until ctx is done: after an Enqueue on this node at
// once, otherwise every Poll. A shard or a destination that fails is logged and retried; Run itself
// returns only ctx's end (nil).
func (o *Outbox) Run(ctx context.Context) error {
	poll := time.NewTicker(o.cfg.Poll)
	defer poll.Stop()
	var lastCleanup time.Time
	for {
		if time.Since(lastCleanup) >= o.cfg.Cleanup {
			o.cleanup(ctx)
			lastCleanup = time.Now()
		}
		// Keep passing while passes find work, so that a backlog drains at the speed of delivery.
		for ctx.Err() == nil && o.Pass(ctx) > 0 {
		}
		select {
		case <-ctx.Done():
			return nil
		case <-o.wake:
		case <-poll.C:
		}
	}
}

// claimed is one message handed to this node for one attempt.
type claimed struct {
	shard    string
	pool     *pgxpool.Pool
	ksid     []byte
	id       [16]byte
	dest     string
	attempts int
	d        Delivery
	// leased is when the claim was sent: the lease ends no earlier than leased+Lease.
	leased time.Time
}

// Pass claims the due messages of every shard of the region once, attempts each, and returns how many
// it attempted.
func (o *Outbox) Pass(ctx context.Context) int {
	var batch []claimed
	for _, t := range o.a.Pools.Targets(o.a.Region) {
		c, err := o.claim(ctx, t)
		if err != nil {
			if ctx.Err() == nil {
				o.a.Log.Warn("outbox: claiming due messages failed", "shard", t.Shard, "err", err)
			}
			continue
		}
		batch = append(batch, c...)
	}
	sem := make(chan struct{}, o.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, c := range batch {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			o.attempt(ctx, c)
		}()
	}
	wg.Wait()
	return len(batch)
}

// claim hands out up to Batch due messages of one shard to this node in one short statement: the rows
// are locked with SKIP LOCKED (a row another node is claiming is left to it) and their next attempt is
// pushed past the lease (so no other node claims them while this one sends).
func (o *Outbox) claim(ctx context.Context, t shardpool.Target) ([]claimed, error) {
	leased := time.Now()
	rows, err := t.Pool.Query(ctx, `
		UPDATE core.outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
		FROM (SELECT ksid, id FROM core.outbox WHERE delivered_at IS NULL AND next_attempt_at <= now()
		      ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
		WHERE o.ksid = due.ksid AND o.id = due.id
		RETURNING o.ksid, o.id, o.destination, o.target_ksid, o.kind, o.idempotency_key, o.payload, o.attempts`,
		o.cfg.Batch, o.cfg.Lease.Milliseconds())
	if err != nil {
		return nil, err
	}
	var out []claimed
	for rows.Next() {
		c := claimed{shard: t.Shard, pool: t.Pool, leased: leased}
		var to []byte
		if err := rows.Scan(&c.ksid, &c.id, &c.dest, &to, &c.d.Kind, &c.d.Key, &c.d.Payload, &c.attempts); err != nil {
			rows.Close()
			return nil, err
		}
		if c.d.To, err = shardkey.KeyspaceIDFromBytes(to); err != nil {
			rows.Close()
			return nil, err
		}
		c.d.From = o.a.Region
		out = append(out, c)
	}
	return out, rows.Err()
}

// attempt sends one claimed message and records the outcome on its shard.
func (o *Outbox) attempt(ctx context.Context, c claimed) {
	if time.Since(c.leased)+o.cfg.SendTimeout >= o.cfg.Lease {
		// The attempt could outlast the lease (the batch waited behind slow attempts), when another
		// node may claim the message: hand it back instead of risking two sends at once.
		if _, err := c.pool.Exec(ctx, `UPDATE core.outbox SET next_attempt_at = now() WHERE ksid = $1 AND id = $2 AND delivered_at IS NULL`,
			c.ksid, c.id); err != nil && ctx.Err() == nil {
			o.a.Log.Warn("outbox: handing back a claim failed; it is retried after its lease", "shard", c.shard, "err", err)
		}
		return
	}
	sctx, cancel := context.WithTimeout(ctx, o.cfg.SendTimeout)
	err := o.send(sctx, c)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the lease runs out and the message is sent again
	}
	// The bookkeeping below runs on the shard the message was claimed from. If it is lost (the shard
	// fails, or the row's keyrange was frozen and moved meanwhile), the message is only sent again,
	// which the receiver's inbox absorbs.
	if err == nil {
		if _, err := c.pool.Exec(ctx, `UPDATE core.outbox SET delivered_at = now(), last_error = NULL
			WHERE ksid = $1 AND id = $2 AND delivered_at IS NULL`, c.ksid, c.id); err != nil {
			o.a.Log.Warn("outbox: recording a delivery failed; it will be sent again", "shard", c.shard, "kind", c.d.Kind, "err", err)
		}
		o.metrics.delivered.WithLabelValues(c.d.Kind).Inc()
		return
	}
	o.metrics.failed.WithLabelValues(c.d.Kind).Inc()
	wait := o.backoff(c.attempts)
	msg := err.Error()
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	if _, uerr := c.pool.Exec(ctx, `UPDATE core.outbox SET next_attempt_at = now() + $3 * interval '1 millisecond', last_error = $4
		WHERE ksid = $1 AND id = $2 AND delivered_at IS NULL`, c.ksid, c.id, wait.Milliseconds(), msg); uerr != nil {
		o.a.Log.Warn("outbox: recording a failed attempt failed", "shard", c.shard, "kind", c.d.Kind, "err", uerr)
	}
	o.a.Log.Info("outbox: delivery failed; retrying later", "destination", c.dest, "kind", c.d.Kind, "attempts", c.attempts,
		"retry_in", wait, "err", err)
}

// send delivers to this node's handler for this region, and to a node of the destination otherwise.
// The destination is looked up again in the topology in force: a receiver pinned to another region
// since the enqueue is reached where it lives now.
func (o *Outbox) send(ctx context.Context, c claimed) error {
	if dest, err := o.regionOf(c.d.To); err == nil {
		c.dest = dest
	}
	if c.dest == o.a.Region {
		_, err := o.Receive(ctx, c.d)
		return err
	}
	if o.a.Peers == nil {
		return errors.New("outbox: this node has no peers client")
	}
	var ans deliverAnswer
	if err := o.a.Peers.Call(ctx, c.dest, http.MethodPost, feature.InternalPath(DeliverPath), c.d, &ans); err != nil {
		return fmt.Errorf("region %s: %w", c.dest, err)
	}
	return nil
}

// backoff is the wait after the attempts-th failed attempt: BaseBackoff doubled per earlier failure,
// capped at MaxBackoff, drawn uniformly from its upper half so that messages failed together spread out.
func (o *Outbox) backoff(attempts int) time.Duration {
	d := o.cfg.MaxBackoff
	if attempts < 1 {
		attempts = 1
	}
	if shift := attempts - 1; shift < 30 {
		if b := o.cfg.BaseBackoff << shift; b > 0 && b < d {
			d = b
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// cleanup deletes delivered messages and received keys past their retention, and refreshes the
// pending gauge, on every shard of the region. Several nodes doing it at once is harmless.
func (o *Outbox) cleanup(ctx context.Context) {
	pending := map[string]float64{}
	for _, t := range o.a.Pools.Targets(o.a.Region) {
		err := pgx.BeginFunc(ctx, t.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM core.outbox WHERE delivered_at < now() - $1 * interval '1 millisecond'`,
				o.cfg.Retention.Milliseconds()); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM core.inbox WHERE received_at < now() - $1 * interval '1 millisecond'`,
				o.cfg.InboxRetention.Milliseconds()); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT kind, count(*) FROM core.outbox WHERE delivered_at IS NULL GROUP BY kind`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var kind string
				var n int64
				if err := rows.Scan(&kind, &n); err != nil {
					return err
				}
				pending[kind] += float64(n)
			}
			return rows.Err()
		})
		if err != nil && ctx.Err() == nil {
			o.a.Log.Warn("outbox: cleanup failed", "shard", t.Shard, "err", err)
		}
	}
	o.metrics.pending.Reset()
	for kind, n := range pending {
		o.metrics.pending.WithLabelValues(kind).Set(n)
	}
}
