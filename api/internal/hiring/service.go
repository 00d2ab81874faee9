// Package hiring serves proposals and contracts across regions (docs/hiring.md).
//
// A proposal belongs to its author, the freelancer, and lives on the author's shard; a contract belongs
// to its client, the job's owner, and lives on the client's shard with the job. The other party holds
// a reference row on its own shard — core.job_proposals for the job's owner, core.contract_refs for the
// freelancer — so each party lists its own items from its home shard, with no scatter. The two sides
// are kept in step by the outbox (api/internal/outbox): every change enqueues, in its own transaction,
// a message to the other side, applied there exactly once. Text (a cover letter) is never copied: it
// is read in its author's region, where the router sends a request for the proposal's ID.
package hiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/outbox"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// API-key scopes of the hiring endpoints (access tokens have every scope).
const (
	ScopeRead  = "hiring:read"
	ScopeWrite = "hiring:write"
)

// Limits of a proposal (core.proposals).
const (
	MaxCoverLetter = 10000
	// MaxRate is the largest rate numeric(12,2) holds, in cents.
	MaxRate = 999999999999
)

// Profiles is what scoring reads of the author's profile: the profiles feature implements it.
type Profiles interface {
	// Skills returns user's profile skills (nil without a profile).
	Skills(ctx context.Context, shard shardpool.Routed, user shardkey.ID) ([]string, error)
}

// Ratings is what scoring reads of the author's verified reviews: the reviews feature implements it.
type Ratings interface {
	Rating(ctx context.Context, user shardkey.ID) (count int, average float64, err error)
}

// Service serves the hiring endpoints and applies the hiring messages of the outbox.
type Service struct {
	a        *feature.Deps
	out      *outbox.Outbox
	san      *richtext.Sanitizer
	profiles Profiles
	ratings  Ratings
	log      *slog.Logger
}

// New returns the service and registers its message kinds with out. profiles and ratings feed a
// proposal's score.
func New(a *feature.Deps, out *outbox.Outbox, profiles Profiles, ratings Ratings) (*Service, error) {
	switch {
	case a == nil || a.Pools == nil || a.IDs == nil:
		return nil, errors.New("hiring: the app needs Pools and IDs")
	case out == nil || profiles == nil || ratings == nil:
		return nil, errors.New("hiring: the outbox, profiles and ratings are required")
	}
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{a: a, out: out, san: richtext.New(), profiles: profiles, ratings: ratings, log: log}
	for kind, h := range map[string]outbox.Handler{
		kindProposalSync:  s.applyProposalSync,
		kindProposalClose: s.applyProposalClose,
		kindContractSync:  s.applyContractSync,
		kindContractEnd:   s.applyContractCancel,
	} {
		if err := out.Handle(kind, h); err != nil {
			return nil, fmt.Errorf("hiring: %w", err)
		}
	}
	return s, nil
}
