package matching

import (
	"context"
	"strings"
	"time"

	"github.com/8thdegree/meridian/api/internal/matching/index"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// rating is a user's verified reviews: how many and their average.
type rating struct {
	n   int
	avg float64
}

// ratings are the region's verified ratings, refreshed by the loader.
type ratings = map[shardkey.ID]rating

// runLoader keeps both corpora in step with the region's shards: on every notification of a changed
// vector (pg_notify, sent at commit by embedOne) and at least every Refresh, it reads what changed
// after each shard's watermark and swaps in a new snapshot; every FullReload it also drops what is gone.
func (s *Service) runLoader(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	go s.listen(ctx, wake)
	go s.dropGone(ctx)
	var lastFull, lastRatings time.Time
	for {
		full := time.Since(lastFull) >= s.cfg.FullReload
		if err := s.refresh(ctx, full); err == nil && full {
			lastFull = time.Now()
		}
		if time.Since(lastRatings) >= 10*s.cfg.Refresh {
			if s.refreshRatings(ctx) == nil {
				lastRatings = time.Now()
			}
		}
		t := time.NewTimer(s.cfg.Refresh)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// listen waits for the region's shards' notifications and wakes the loader.
// dropGone removes from the indexes the entities whose vectors were removed, as the notifications
// name them (a notification missed while a node was away is caught by the next full reload).
func (s *Service) dropGone(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case g := <-s.gone:
			c := s.profiles
			if g.kind == kindJob {
				c = s.jobs
			}
			if err := c.apply(nil, nil, []shardkey.ID{g.id}); err != nil {
				s.log.Warn("matching: dropping a removed vector", "id", g.id, "err", err)
			}
		}
	}
}

// goneEntity is an entity whose vector was removed.
type goneEntity struct {
	kind string
	id   shardkey.ID
}

// parseGone reads a gone notification's payload ("gone:job:job_…").
func parseGone(payload string) (goneEntity, bool) {
	rest, ok := strings.CutPrefix(payload, goneNotice)
	if !ok {
		return goneEntity{}, false
	}
	kind, raw, ok := strings.Cut(rest, ":")
	if !ok || (kind != kindJob && kind != kindProfile) {
		return goneEntity{}, false
	}
	id, err := shardkey.ParseID(raw)
	if err != nil {
		return goneEntity{}, false
	}
	return goneEntity{kind: kind, id: id}, true
}

func (s *Service) listen(ctx context.Context, wake chan<- struct{}) {
	started := map[string]bool{}
	for {
		for _, t := range s.a.Pools.Targets(s.a.Region) {
			if !started[t.Shard] {
				started[t.Shard] = true
				go s.listenShard(ctx, t.Shard, wake)
			}
		}
		if !sleep(ctx, 10*time.Second) {
			return
		}
	}
}

func (s *Service) listenShard(ctx context.Context, shard string, wake chan<- struct{}) {
	for ctx.Err() == nil {
		t, err := s.a.Pools.Shard(shard)
		if err == nil {
			err = func() error {
				conn, err := t.Pool.Acquire(ctx)
				if err != nil {
					return err
				}
				defer conn.Release()
				if _, err := conn.Exec(ctx, "LISTEN meridian_matching"); err != nil {
					return err
				}
				for {
					n, err := conn.Conn().WaitForNotification(ctx)
					if err != nil {
						return err
					}
					if g, ok := parseGone(n.Payload); ok {
						select {
						case s.gone <- g:
						case <-ctx.Done():
							return ctx.Err()
						}
						continue
					}
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}()
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("matching: listening for changes", "shard", shard, "err", err)
		sleep(ctx, time.Second)
	}
}

// refresh loads what changed on every shard of the region into the corpora; with full, it also
// drops the entities whose vectors are gone.
func (s *Service) refresh(ctx context.Context, full bool) error {
	view, err := s.a.ReadRegion(ctx)
	if err != nil {
		return err
	}
	bounds := shardpool.OwnedBounds(view.Table)
	space := s.emb.Space().ID()
	var firstErr error
	for _, c := range []*corpus{s.profiles, s.jobs} {
		var (
			items []index.Item
			fs    []*facts
			live  map[shardkey.ID]bool
		)
		if full {
			live = map[shardkey.ID]bool{}
		}
		complete := true
		marks := map[string]time.Time{}
		for _, t := range view.Targets {
			b, ok := bounds[t.Shard]
			if !ok {
				continue
			}
			it, f, wm, err := c.loadShard(ctx, t, b, space)
			if err != nil {
				complete = false
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			items, fs, marks[t.Shard] = append(items, it...), append(fs, f...), wm
			if full {
				if err := c.liveIDs(ctx, t, b, space, live); err != nil {
					complete = false
				}
			}
		}
		var gone []shardkey.ID
		if full && complete {
			for id := range c.load().facts {
				if !live[id] {
					gone = append(gone, id)
				}
			}
		}
		if err := c.apply(items, fs, gone); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue // the watermarks stay: the next refresh reads the same rows again
		}
		for shard, wm := range marks {
			c.advance(shard, wm)
		}
		s.metrics.indexed.WithLabelValues(c.kind).Set(float64(c.load().ix.Len()))
	}
	if firstErr == nil && !full {
		return nil
	}
	return firstErr
}

// refreshRatings reads the region's verified ratings.
func (s *Service) refreshRatings(ctx context.Context) error {
	view, err := s.a.ReadRegion(ctx)
	if err != nil {
		return err
	}
	bounds := shardpool.OwnedBounds(view.Table)
	next := ratings{}
	for _, t := range view.Targets {
		b, ok := bounds[t.Shard]
		if !ok {
			continue
		}
		rows, err := t.Pool.Query(ctx, ratingsSQL, b.Lo, b.Hi)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				raw []byte
				r   rating
			)
			if err := rows.Scan(&raw, &r.n, &r.avg); err != nil {
				rows.Close()
				return err
			}
			if id, err := shardkey.IDFromBytes(raw); err == nil {
				next[id] = r
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	s.ratings.Store(&next)
	return nil
}

// ratingOf returns user's verified rating as the loader last read it.
func (s *Service) ratingOf(user shardkey.ID) rating {
	if m := s.ratings.Load(); m != nil {
		return (*m)[user]
	}
	return rating{}
}
