package accounts

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
)

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) error {
	p := feature.Caller(r)
	routed, err := s.a.ReadShard(p.KSID)
	if err != nil {
		return err
	}
	u, err := loadUser(r.Context(), routed.Pool, routed.Route.KeyspaceID, p.UserID, "")
	if errors.Is(err, errNoUser) || (err == nil && u.Deleted) {
		return apierror.NotFound("user")
	}
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, u.json())
	return nil
}

// handleJWKS publishes the access-token verification keys; routers fetch it to verify tokens
// without calling a node. Keys change only with a restart, so caches may keep it a few minutes.
func (s *Service) handleJWKS(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "public, max-age=300")
	rest.WriteJSON(w, http.StatusOK, json.RawMessage(s.cfg.Tokens.Keys().JWKS()))
	return nil
}
