package matching

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/matching/embed"
	"github.com/8thdegree/meridian/api/internal/outbox"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// kindEmbed is the outbox message that recomputes one entity's vector on its owner's shard.
const kindEmbed = "matching.embed"

// The kinds of embedded entities (ai.embeddings.kind).
const (
	kindProfile = "profile"
	kindJob     = "job"
)

type embedMessage struct {
	Kind string      `json:"kind"`
	ID   shardkey.ID `json:"id"`
}

// enqueue asks, inside the transaction of a change on owner's shard, for the entity's vector to be
// recomputed: the message commits with the change, so a crash loses no recomputation.
func (s *Service) enqueue(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, kind string, id shardkey.ID) error {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	return s.out.Enqueue(ctx, tx, outbox.Message{KSID: owner, To: owner, Kind: kindEmbed,
		Key: kind + ":" + id.String() + ":" + hex.EncodeToString(nonce[:]), Payload: embedMessage{Kind: kind, ID: id}})
}

// JobChanged implements jobs.Watcher: a job was created, changed or deleted.
func (s *Service) JobChanged(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, job shardkey.ID) error {
	return s.enqueue(ctx, tx, owner, kindJob, job)
}

// ProfileChanged implements profiles.Watcher: a profile was written.
func (s *Service) ProfileChanged(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, user shardkey.ID) error {
	return s.enqueue(ctx, tx, owner, kindProfile, user)
}

func (s *Service) applyEmbed(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var m embedMessage
	if err := json.Unmarshal(d.Payload, &m); err != nil || (m.Kind != kindProfile && m.Kind != kindJob) {
		return fmt.Errorf("matching: bad %s payload: %s", kindEmbed, d.Payload)
	}
	return s.embedOne(ctx, tx, d.To, m.Kind, m.ID)
}

// embedOne brings the entity's vector in the current space up to date in tx, on the owner's shard:
// recomputed when its text changed, touched when only its facts did (so the index reloads them),
// removed when the entity is gone. Every change notifies the region's nodes at commit.
func (s *Service) embedOne(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, kind string, id shardkey.ID) error {
	space := s.emb.Space()
	q := profileTextSQL
	if kind == kindJob {
		q = jobTextSQL
	}
	var doc embed.Doc
	err := tx.QueryRow(ctx, q, owner.Bytes(), id.Bytes()).Scan(&doc.Title, &doc.Body, &doc.Skills)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.unembed(ctx, tx, owner, kind, id)
	}
	if err != nil {
		return fmt.Errorf("matching: reading %s %s: %w", kind, id, err)
	}
	doc.Body = richtext.StripMarkup(doc.Body)
	sum := sha256.Sum256([]byte(space.ID() + "\x00" + doc.Title + "\x00" + doc.Body + "\x00" + strings.Join(doc.Skills, "\x00")))
	var have []byte
	err = tx.QueryRow(ctx, embeddingHashSQL, owner.Bytes(), id.Bytes(), space.ID()).Scan(&have)
	switch {
	case err == nil && string(have) == string(sum[:]):
		_, err = tx.Exec(ctx, touchEmbeddingSQL, owner.Bytes(), id.Bytes(), space.ID())
	case err == nil || errors.Is(err, pgx.ErrNoRows):
		var vecs [][]float32
		vecs, err = s.emb.EmbedDocs(ctx, []embed.Doc{doc})
		if errors.Is(err, embed.ErrEmptyText) {
			// Nothing to embed (an empty profile): no vector, and none left from an earlier text.
			return s.unembed(ctx, tx, owner, kind, id)
		}
		if err != nil {
			s.metrics.embedFailures.Inc()
			return fmt.Errorf("matching: embedding %s %s: %w", kind, id, err)
		}
		s.metrics.embedded.WithLabelValues(kind).Inc()
		_, err = tx.Exec(ctx, upsertEmbeddingSQL, owner.Bytes(), id.Bytes(), kind, space.ID(), space.Dims, vecs[0], sum[:])
	}
	if err != nil {
		return fmt.Errorf("matching: storing the vector of %s %s: %w", kind, id, err)
	}
	_, err = tx.Exec(ctx, notifySQL, kind)
	return err
}

// unembed removes the entity's vectors (it is gone, or has no text) and tells the region's nodes at
// commit which one went, so that their indexes drop it at once.
func (s *Service) unembed(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, kind string, id shardkey.ID) error {
	tag, err := tx.Exec(ctx, deleteEmbeddingsSQL, owner.Bytes(), id.Bytes())
	if err != nil || tag.RowsAffected() == 0 {
		return err // nothing was indexed: nobody to tell
	}
	_, err = tx.Exec(ctx, notifySQL, goneNotice+kind+":"+id.String())
	return err
}

// goneNotice prefixes the notification of an entity whose vector was removed.
const goneNotice = "gone:"

// runBackfill embeds, shard by shard, the entities without an up-to-date vector in the current space:
// those whose message was lost to nothing (there is none: it commits with the change) but that
// predate the engine, changed in a way no message covered, or live in a space the node just switched
// to. It runs until ctx is done.
func (s *Service) runBackfill(ctx context.Context) error {
	for sleep(ctx, 2*s.cfg.Refresh) {
		s.backfillOnce(ctx)
	}
	return nil
}

// backfillOnce makes one pass of the backfill over the region's shards.
func (s *Service) backfillOnce(ctx context.Context) {
	view, err := s.a.ReadRegion(ctx)
	if err != nil {
		return
	}
	bounds := shardpool.OwnedBounds(view.Table)
	for _, t := range view.Targets {
		b, ok := bounds[t.Shard]
		if !ok {
			continue
		}
		for _, kind := range []string{kindProfile, kindJob} {
			if err := s.backfillShard(ctx, t, b, kind); err != nil && ctx.Err() == nil {
				s.log.Warn("matching: backfill", "shard", t.Shard, "kind", kind, "err", err)
			}
		}
	}
}

func (s *Service) backfillShard(ctx context.Context, t shardpool.Target, b shardpool.Bounds, kind string) error {
	q := staleProfilesSQL
	if kind == kindJob {
		q = staleJobsSQL
	}
	rows, err := t.Pool.Query(ctx, q, s.emb.Space().ID(), b.Lo, b.Hi, s.cfg.EmbedBatch)
	if err != nil {
		return err
	}
	type entity struct {
		ksid shardkey.KeyspaceID
		id   shardkey.ID
	}
	var todo []entity
	for rows.Next() {
		var k, id []byte
		if err := rows.Scan(&k, &id); err != nil {
			rows.Close()
			return err
		}
		ks, err1 := shardkey.KeyspaceIDFromBytes(k)
		eid, err2 := shardkey.IDFromBytes(id)
		if err1 != nil || err2 != nil {
			continue
		}
		todo = append(todo, entity{ks, eid})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, e := range todo {
		if err := pgx.BeginFunc(ctx, t.Pool, func(tx pgx.Tx) error { return s.embedOne(ctx, tx, e.ksid, kind, e.id) }); err != nil {
			return err
		}
	}
	return nil
}
