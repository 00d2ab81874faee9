package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
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

// Service serves profiles and settings.
type Service struct {
	a       *feature.Deps
	san     *richtext.Sanitizer
	ratings RatingSource
}

// New returns the profiles service. ratings feeds the public profile's rating.
func New(a *feature.Deps, ratings RatingSource) (*Service, error) {
	switch {
	case a == nil || a.Pools == nil:
		return nil, errors.New("profiles: app with shard pools required")
	case ratings == nil:
		return nil, errors.New("profiles: a rating source is required")
	}
	return &Service{a: a, san: richtext.New(), ratings: ratings}, nil
}

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

const profileColumns = `headline, bio, skills, hourly_rate::text, country, available`

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
	dest := append(extra, &headline, &bio, &p.Skills, &rate, &p.Country, &avail)
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

func (s *Service) getOwnProfile(w http.ResponseWriter, r *http.Request) error {
	caller := feature.Caller(r)
	shard, err := s.a.ReadShard(caller.KSID)
	if err != nil {
		return err
	}
	p, err := scanProfile(shard.Pool.QueryRow(r.Context(),
		`SELECT `+profileColumns+` FROM core.profiles WHERE ksid = $1 AND user_id = $2`,
		shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes()))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		p = emptyProfile()
	case err != nil:
		return fmt.Errorf("profiles: reading profile: %w", err)
	}
	rest.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (s *Service) putOwnProfile(w http.ResponseWriter, r *http.Request) error {
	caller := feature.Caller(r)
	var req profileRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	in, bad := req.normalize(s.san)
	if len(bad) > 0 {
		return apierror.Invalid(bad)
	}
	shard, err := s.a.WriteShard(r.Context(), caller.KSID)
	if err != nil {
		return err
	}
	var rate *string
	if in.HourlyRate != nil {
		v := in.HourlyRate.String()
		rate = &v
	}
	p, err := scanProfile(shard.Pool.QueryRow(r.Context(), `
		INSERT INTO core.profiles AS p (ksid, user_id, headline, bio, skills, hourly_rate, country, available)
		VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8)
		ON CONFLICT (ksid, user_id) DO UPDATE SET
			headline = EXCLUDED.headline, bio = EXCLUDED.bio, skills = EXCLUDED.skills,
			hourly_rate = EXCLUDED.hourly_rate, country = EXCLUDED.country, available = EXCLUDED.available
		RETURNING `+profileColumns,
		shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes(), in.Headline, in.Bio, in.Skills, rate, in.Country, in.Available))
	if err != nil {
		return ownerMissing(err, "profiles: writing profile")
	}
	rest.WriteJSON(w, http.StatusOK, p)
	return nil
}

// ownerMissing turns a foreign-key failure (the caller's user row is gone: erased while a token was
// still valid) into a 404, and wraps anything else.
func ownerMissing(err error, what string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		return apierror.NotFound("user").WithCause(err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (s *Service) getPublicProfile(w http.ResponseWriter, r *http.Request) error {
	// A malformed ID names no user: 404, like an unknown one, so IDs cannot be probed for shape.
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindUser)
	if err != nil {
		return apierror.NotFound("user").WithCause(err)
	}
	shard, err := s.a.ReadShard(id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("user").WithCause(err) // a region code no region has
	}
	if err != nil {
		return err
	}
	out := PublicProfile{ID: id}
	out.Profile, err = scanProfile(shard.Pool.QueryRow(r.Context(), `
		SELECT u.name, u.role, p.headline, p.bio, COALESCE(p.skills, '{}'), p.hourly_rate::text, p.country, p.available
		FROM auth.users u
		LEFT JOIN core.profiles p ON p.ksid = u.ksid AND p.user_id = u.id
		WHERE u.ksid = $1 AND u.id = $2 AND u.deleted_at IS NULL`,
		shard.Route.KeyspaceID.Bytes(), id.Bytes()), &out.Name, &out.Role)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return apierror.NotFound("user")
	case err != nil:
		return fmt.Errorf("profiles: reading public profile: %w", err)
	}
	out.Rating.Count, out.Rating.Average, err = s.ratings.Rating(r.Context(), id)
	if err != nil {
		return fmt.Errorf("profiles: rating of %s: %w", id, err)
	}
	rest.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) getSettings(w http.ResponseWriter, r *http.Request) error {
	caller := feature.Caller(r)
	shard, err := s.a.ReadShard(caller.KSID)
	if err != nil {
		return err
	}
	st, err := s.readSettings(r.Context(), shard.Pool, shard.Route.KeyspaceID, caller.UserID)
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, st)
	return nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Service) readSettings(ctx context.Context, q querier, ksid shardkey.KeyspaceID, user shardkey.ID) (Settings, error) {
	st, err := scanSettings(q.QueryRow(ctx,
		`SELECT locale, timezone, notifications FROM core.settings WHERE ksid = $1 AND user_id = $2`,
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

func (s *Service) patchSettings(w http.ResponseWriter, r *http.Request) error {
	caller := feature.Caller(r)
	var req settingsPatch
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	patch, bad := req.normalize()
	if len(bad) > 0 {
		return apierror.Invalid(bad)
	}
	shard, err := s.a.WriteShard(r.Context(), caller.KSID)
	if err != nil {
		return err
	}
	if patch.Locale == nil && patch.Timezone == nil && len(patch.Notifications) == 0 {
		// Nothing to change: answer with the settings as they are rather than touch updated_at.
		st, err := s.readSettings(r.Context(), shard.Pool, shard.Route.KeyspaceID, caller.UserID)
		if err != nil {
			return err
		}
		rest.WriteJSON(w, http.StatusOK, st)
		return nil
	}
	notif, err := json.Marshal(patch.Notifications)
	if err != nil {
		return fmt.Errorf("profiles: encoding notifications: %w", err)
	}
	if patch.Notifications == nil {
		notif = []byte("{}")
	}
	insLocale, insTZ := DefaultLocale, DefaultTimezone
	if patch.Locale != nil {
		insLocale = *patch.Locale
	}
	if patch.Timezone != nil {
		insTZ = *patch.Timezone
	}
	// One statement, so concurrent PATCHes of different keys both land: jsonb || merges the given
	// keys into whatever is stored at the moment of the update.
	st, err := scanSettings(shard.Pool.QueryRow(r.Context(), `
		INSERT INTO core.settings AS s (ksid, user_id, locale, timezone, notifications)
		VALUES ($1, $2, $3, $4, $5::jsonb)
		ON CONFLICT (ksid, user_id) DO UPDATE SET
			locale = COALESCE($6::text, s.locale),
			timezone = COALESCE($7::text, s.timezone),
			notifications = s.notifications || $5::jsonb
		RETURNING locale, timezone, notifications`,
		shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes(), insLocale, insTZ, string(notif), patch.Locale, patch.Timezone))
	if err != nil {
		return ownerMissing(err, "profiles: writing settings")
	}
	rest.WriteJSON(w, http.StatusOK, st)
	return nil
}
