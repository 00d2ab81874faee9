package profiles

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// Candidate is a freelancer whose profile shares a skill with a job, as Candidates ranks them.
type Candidate struct {
	UserID shardkey.ID
	// Skills are the profile's skills as stored.
	Skills []string
	// Score is the Jaccard index of the two normalised skill sets, from 0 to 1.
	Score float64
	// Tie is sha256(user ID || salt): a tie-break that is stable for one salt (a job) and unrelated to
	// account age or name.
	Tie []byte
}

// CandidatePage is one shard's ranked candidates.
type CandidatePage struct {
	Items []Candidate
	// Considered counts the shard's available freelancers within the keyranges; Overlapping, those
	// that share at least one skill.
	Considered, Overlapping int64
}

// Candidates ranks the available freelancers of shard t whose rows fall in the keyranges
// [lo[i], hi[i]) by skill overlap with want (normalised, distinct), best first, at most limit, with
// salt seeding the tie-break. Counting and ranking share one round trip (a pgx batch).
func (s *Service) Candidates(ctx context.Context, t shardpool.Target, want []string, salt []byte, lo, hi [][]byte, limit int) (CandidatePage, error) {
	var b pgx.Batch
	b.Queue(countFreelancersSQL, lo, hi)
	b.Queue(matchFreelancersSQL, want, salt, lo, hi, limit)
	br := t.Pool.SendBatch(ctx, &b)
	defer br.Close()
	var page CandidatePage
	if err := br.QueryRow().Scan(&page.Considered); err != nil {
		return page, err
	}
	rows, err := br.Query()
	if err != nil {
		return page, err
	}
	page.Items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Candidate, error) {
		var (
			c   Candidate
			uid []byte
		)
		if err := row.Scan(&uid, &c.Skills, &c.Score, &c.Tie, &page.Overlapping); err != nil {
			return c, err
		}
		var err error
		c.UserID, err = shardkey.IDFromBytes(uid)
		return c, err
	})
	if err != nil {
		return page, err
	}
	return page, br.Close()
}

// Skills returns the skills of user's profile on shard, as stored; nil when they have no profile.
func (s *Service) Skills(ctx context.Context, shard shardpool.Routed, user shardkey.ID) ([]string, error) {
	var have []string
	err := shard.Pool.QueryRow(ctx, profileSkillsSQL, shard.Route.KeyspaceID.Bytes(), user.Bytes()).Scan(&have)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return have, err
}
