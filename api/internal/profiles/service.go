package profiles

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// API-key scopes of the routes. Tokens have every scope.
const (
	ScopeRead  = "profile:read"
	ScopeWrite = "profile:write"
)

// RatingSource gives a user's review count and average rating (the reviews package).
type RatingSource interface {
	Rating(ctx context.Context, userID shardkey.ID) (count int, average float64, err error)
}

// Watcher is told, inside the transaction that writes it, that a profile changed. The matching engine
// implements it (it recomputes the profile's vector through the outbox).
type Watcher interface {
	ProfileChanged(ctx context.Context, tx pgx.Tx, owner shardkey.KeyspaceID, user shardkey.ID) error
}

// Service serves profiles and settings.
type Service struct {
	a        *feature.Deps
	san      *richtext.Sanitizer
	ratings  RatingSource
	watchers []Watcher
}

// New returns the profiles service. ratings feeds the public profile's rating; watchers are told of
// every profile written.
func New(a *feature.Deps, ratings RatingSource, watchers ...Watcher) (*Service, error) {
	switch {
	case a == nil || a.Pools == nil:
		return nil, errors.New("profiles: app with shard pools required")
	case ratings == nil:
		return nil, errors.New("profiles: a rating source is required")
	}
	return &Service{a: a, san: richtext.New(), ratings: ratings, watchers: watchers}, nil
}
