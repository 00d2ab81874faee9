package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/jackc/pgx/v5"
)

// claimLocal runs the claim on this region's directory shard. The primary key (ksid, email_hash)
// decides races between regions: one INSERT wins, the others read the winner.
func (d *Directory) claimLocal(ctx context.Context, ksid shardkey.KeyspaceID, h Hash, userID shardkey.ID, home string) error {
	routed, err := d.a.WriteShard(ctx, ksid)
	if err != nil {
		return err
	}
	db := routed.Pool
	// A claim released between our INSERT and our SELECT makes us try again; twice is plenty.
	for range 3 {
		now := d.now()
		tag, err := db.Exec(ctx, `
			INSERT INTO auth.email_claims (ksid, email_hash, user_id, home_region, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ksid, email_hash) DO NOTHING`,
			ksid.Bytes(), h[:], userID.Bytes(), home, now)
		if err != nil {
			return fmt.Errorf("directory: claiming an email: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		cur, found, err := d.lookupLocal(ctx, ksid, h)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if cur.UserID == userID {
			return nil // a retried claim
		}
		if now.Sub(cur.CreatedAt) < OrphanAfter {
			return ErrTaken
		}
		exists, err := d.users.UserExists(ctx, cur.UserID, cur.HomeRegion)
		if err != nil {
			return err
		}
		if exists {
			return ErrTaken
		}
		// An orphan: its registration never created the user. Take it over, unless someone else
		// just did (the user_id condition makes this a compare-and-swap).
		tag, err = db.Exec(ctx, `
			UPDATE auth.email_claims SET user_id = $3, home_region = $4, created_at = $5
			WHERE ksid = $1 AND email_hash = $2 AND user_id = $6`,
			ksid.Bytes(), h[:], userID.Bytes(), home, now, cur.UserID.Bytes())
		if err != nil {
			return fmt.Errorf("directory: taking over an email claim: %w", err)
		}
		if tag.RowsAffected() == 1 {
			d.a.Log.Info("took over an orphaned email claim", "orphan_user", cur.UserID.String(), "orphan_region", cur.HomeRegion)
			return nil
		}
		return ErrTaken
	}
	return ErrTaken
}

// lookupLocal reads h's claim from this region's directory shard.
func (d *Directory) lookupLocal(ctx context.Context, ksid shardkey.KeyspaceID, h Hash) (Claim, bool, error) {
	routed, err := d.a.ReadShard(ctx, ksid)
	if err != nil {
		return Claim{}, false, err
	}
	var (
		c  Claim
		id []byte
	)
	err = routed.Pool.QueryRow(ctx, `SELECT user_id, home_region, created_at FROM auth.email_claims WHERE ksid = $1 AND email_hash = $2`,
		ksid.Bytes(), h[:]).Scan(&id, &c.HomeRegion, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, fmt.Errorf("directory: reading an email claim: %w", err)
	}
	if c.UserID, err = shardkey.IDFromBytes(id); err != nil {
		return Claim{}, false, fmt.Errorf("directory: stored claim: %w", err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, true, nil
}

// releaseLocal deletes h's claim from this region's directory shard if userID holds it.
func (d *Directory) releaseLocal(ctx context.Context, ksid shardkey.KeyspaceID, h Hash, userID shardkey.ID) error {
	routed, err := d.a.WriteShard(ctx, ksid)
	if err != nil {
		return err
	}
	if _, err := routed.Pool.Exec(ctx, `DELETE FROM auth.email_claims WHERE ksid = $1 AND email_hash = $2 AND user_id = $3`,
		ksid.Bytes(), h[:], userID.Bytes()); err != nil {
		return fmt.Errorf("directory: releasing an email claim: %w", err)
	}
	return nil
}
