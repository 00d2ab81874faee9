package accounts

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// The accounts core's side of the email directory (package directory): whether a user exists, which
// the directory asks before it takes over an orphaned claim.

var _ directory.Users = (*Service)(nil)

func (s *Service) topology() (*topology.Topology, error) {
	tab := s.a.Topology()
	if tab == nil {
		return nil, apierror.Unavailable("the node has no topology yet", time.Second)
	}
	return tab.Topology(), nil
}

// UserExists asks the user's home region whether the user row exists (deleted or not: a soft-deleted
// user keeps its email).
func (s *Service) UserExists(ctx context.Context, id shardkey.ID, homeHint string) (bool, error) {
	region := s.regionOf(id, homeHint)
	if region == s.a.Region {
		return s.userExistsLocal(ctx, id)
	}
	var out struct {
		Exists bool `json:"exists"`
	}
	if err := s.a.Peers.Call(ctx, region, http.MethodGet, feature.InternalPath("/internal/users/"+id.String()+"/exists"), nil, &out); err != nil {
		return false, feature.PeerError(ctx, region, err)
	}
	return out.Exists, nil
}

func (s *Service) userExistsLocal(ctx context.Context, id shardkey.ID) (bool, error) {
	routed, err := s.a.ReadShard(ctx, id.KeyspaceID())
	if err != nil {
		return false, err
	}
	var exists bool
	err = routed.Pool.QueryRow(ctx, userExistsSQL,
		routed.Route.KeyspaceID.Bytes(), id.Bytes()).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("accounts: checking a user: %w", err)
	}
	return exists, nil
}
