package profiles

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// Skills returns the skills of user's profile on shard, as stored; nil when they have no profile.
func (s *Service) Skills(ctx context.Context, shard shardpool.Routed, user shardkey.ID) ([]string, error) {
	var have []string
	err := shard.Pool.QueryRow(ctx, profileSkillsSQL, shard.Route.KeyspaceID.Bytes(), user.Bytes()).Scan(&have)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return have, err
}
