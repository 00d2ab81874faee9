package matching

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// eventRequest is the body of POST /matching/events.
type eventRequest struct {
	ListID   string `json:"list_id"`
	Type     string `json:"type"`
	ItemID   string `json:"item_id"`
	Position int    `json:"position"`
}

// event records that the caller opened or dismissed an item of a list served to them: the list lives
// on the caller's shard, and the item must be the one shown at that position.
func (s *Service) event(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	caller := feature.Caller(r)
	var req eventRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	bad := map[string]string{}
	listID, err := uuid.Parse(req.ListID)
	if err != nil {
		bad["list_id"] = "is not a list ID"
	}
	if req.Type != "opened" && req.Type != "dismissed" {
		bad["type"] = "must be opened or dismissed"
	}
	item, err := shardkey.ParseID(req.ItemID)
	if err != nil || (item.Kind() != shardkey.KindUser && item.Kind() != shardkey.KindJob) {
		bad["item_id"] = "is not a freelancer's or a job's ID"
	}
	if req.Position < 1 || req.Position > MaxLimit {
		bad["position"] = "must be from 1 to 50"
	}
	if len(bad) > 0 {
		return apierror.Invalid(bad)
	}
	shard, err := s.a.WriteShard(ctx, caller.KSID)
	if err != nil {
		return err
	}
	ksid := shard.Route.KeyspaceID
	var raw []byte
	err = shard.Pool.QueryRow(ctx, listItemSQL, ksid.Bytes(), listID).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return apierror.NotFound("list")
	}
	if err != nil {
		return err
	}
	var shown []struct {
		ID       shardkey.ID `json:"id"`
		Position int         `json:"position"`
	}
	if err := json.Unmarshal(raw, &shown); err != nil {
		return err
	}
	found := false
	for _, it := range shown {
		if it.ID == item && it.Position == req.Position {
			found = true
			break
		}
	}
	if !found {
		return apierror.Invalid(map[string]string{"item_id": "was not shown at that position of the list"})
	}
	if _, err := shard.Pool.Exec(ctx, insertEventSQL, ksid.Bytes(), listID, item.Bytes(), req.Type, req.Position); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
