package profiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func (s *Service) getOwnProfile(w http.ResponseWriter, r *http.Request) error {
	caller := feature.Caller(r)
	shard, err := s.a.ReadShard(r.Context(), caller.KSID)
	if err != nil {
		return err
	}
	p, err := scanProfile(shard.Pool.QueryRow(r.Context(),
		ownProfileSQL,
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
	var p Profile
	err = pgx.BeginFunc(r.Context(), shard.Pool, func(tx pgx.Tx) error {
		var err error
		p, err = scanProfile(tx.QueryRow(r.Context(), putProfileSQL,
			shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes(), in.Headline, in.Bio, in.Skills, rate, in.Country, in.Available, in.Attributes))
		if err != nil {
			return ownerMissing(err, "profiles: writing profile")
		}
		for _, w := range s.watchers {
			if err := w.ProfileChanged(r.Context(), tx, shard.Route.KeyspaceID, caller.UserID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (s *Service) getPublicProfile(w http.ResponseWriter, r *http.Request) error {
	// A malformed ID names no user: 404, like an unknown one, so IDs cannot be probed for shape.
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindUser)
	if err != nil {
		return apierror.NotFound("user").WithCause(err)
	}
	shard, err := s.a.ReadShard(r.Context(), id.KeyspaceID())
	if errors.Is(err, topology.ErrNoShard) {
		return apierror.NotFound("user").WithCause(err) // a region code no region has
	}
	if err != nil {
		return err
	}
	out := PublicProfile{ID: id}
	out.Profile, err = scanProfile(shard.Pool.QueryRow(r.Context(), publicProfileSQL,
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
	shard, err := s.a.ReadShard(r.Context(), caller.KSID)
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
	st, err := scanSettings(shard.Pool.QueryRow(r.Context(), patchSettingsSQL,
		shard.Route.KeyspaceID.Bytes(), caller.UserID.Bytes(), insLocale, insTZ, string(notif), patch.Locale, patch.Timezone))
	if err != nil {
		return ownerMissing(err, "profiles: writing settings")
	}
	rest.WriteJSON(w, http.StatusOK, st)
	return nil
}
