package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// The statements of the profile and settings routes. Every one is keyed by (ksid, user_id), the
// owner's row on the owner's shard.
const (
	ownProfileSQL = `SELECT ` + profileColumns + ` FROM core.profiles WHERE ksid = $1 AND user_id = $2`

	putProfileSQL = `
		INSERT INTO core.profiles AS p (ksid, user_id, headline, bio, skills, hourly_rate, country, available, attributes)
		VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8, $9)
		ON CONFLICT (ksid, user_id) DO UPDATE SET
			headline = EXCLUDED.headline, bio = EXCLUDED.bio, skills = EXCLUDED.skills,
			hourly_rate = EXCLUDED.hourly_rate, country = EXCLUDED.country, available = EXCLUDED.available,
			attributes = EXCLUDED.attributes
		RETURNING ` + profileColumns

	publicProfileSQL = `
		SELECT u.name, u.role, p.headline, p.bio, COALESCE(p.skills, '{}'), p.hourly_rate::text, p.country, p.available,
			'{}'::jsonb -- self-declared attributes are the owner's to see, never public
		FROM auth.users u
		LEFT JOIN core.profiles p ON p.ksid = u.ksid AND p.user_id = u.id
		WHERE u.ksid = $1 AND u.id = $2 AND u.deleted_at IS NULL`

	settingsSQL = `SELECT locale, timezone, notifications FROM core.settings WHERE ksid = $1 AND user_id = $2`

	// One statement, so concurrent PATCHes of different keys both land: jsonb || merges the given
	// keys into whatever is stored at the moment of the update.
	patchSettingsSQL = `
		INSERT INTO core.settings AS s (ksid, user_id, locale, timezone, notifications)
		VALUES ($1, $2, $3, $4, $5::jsonb)
		ON CONFLICT (ksid, user_id) DO UPDATE SET
			locale = COALESCE($6::text, s.locale),
			timezone = COALESCE($7::text, s.timezone),
			notifications = s.notifications || $5::jsonb
		RETURNING locale, timezone, notifications`
)

// Rating is a user's review summary on the public profile.
type Rating struct {
	Count   int     `json:"count"`
	Average float64 `json:"average"`
}

// PublicProfile is what anyone may read about a user: no email, no settings.
type PublicProfile struct {
	ID   shardkey.ID `json:"id"`
	Name string      `json:"name"`
	Role string      `json:"role"`
	Profile
	Rating Rating `json:"rating"`
}

const profileColumns = `headline, bio, skills, hourly_rate::text, country, available, attributes`

// scanProfile reads profileColumns; NULL columns (a LEFT JOIN without a profile row) read as the
// defaults.
func scanProfile(row pgx.Row, extra ...any) (Profile, error) {
	var (
		p        Profile
		headline *string
		bio      *string
		rate     *string
		avail    *bool
	)
	dest := append(extra, &headline, &bio, &p.Skills, &rate, &p.Country, &avail, &p.Attributes)
	if err := row.Scan(dest...); err != nil {
		return Profile{}, err
	}
	if headline != nil {
		p.Headline = *headline
	}
	if bio != nil {
		p.Bio = *bio
	}
	if rate != nil {
		n := json.Number(*rate)
		p.HourlyRate = &n
	}
	if avail != nil {
		p.Available = *avail
	}
	if p.Skills == nil {
		p.Skills = []string{}
	}
	return p, nil
}

func emptyProfile() Profile { return Profile{Skills: []string{}} }

// ownerMissing turns a foreign-key failure (the caller's user row is gone: erased while a token was
// still valid) into a 404, and wraps anything else.
func ownerMissing(err error, what string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		return apierror.NotFound("user").WithCause(err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Service) readSettings(ctx context.Context, q querier, ksid shardkey.KeyspaceID, user shardkey.ID) (Settings, error) {
	st, err := scanSettings(q.QueryRow(ctx, settingsSQL,
		ksid.Bytes(), user.Bytes()))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Settings{Locale: DefaultLocale, Timezone: DefaultTimezone, Notifications: defaultNotifications()}, nil
	case err != nil:
		return Settings{}, fmt.Errorf("profiles: reading settings: %w", err)
	}
	return st, nil
}

func scanSettings(row pgx.Row) (Settings, error) {
	var (
		st  Settings
		raw []byte
	)
	if err := row.Scan(&st.Locale, &st.Timezone, &raw); err != nil {
		return Settings{}, err
	}
	// Keep only boolean values: the column is any JSON object, and a value written by some other
	// tool must not break reading the settings.
	var stored map[string]any
	if err := json.Unmarshal(raw, &stored); err != nil {
		return Settings{}, fmt.Errorf("profiles: notifications column: %w", err)
	}
	flags := make(map[string]bool, len(stored))
	for k, v := range stored {
		if b, ok := v.(bool); ok {
			flags[k] = b
		}
	}
	st.Notifications = effectiveNotifications(flags)
	return st, nil
}

// profileSkillsSQL serves Skills: the hiring feature scores a proposal with its author's skills.
const (
	profileSkillsSQL = `SELECT skills FROM core.profiles WHERE ksid = $1 AND user_id = $2`
)
