package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// The claim protocol's clocks.
const (
	// orphanAfter is how old a claim must be before another registration may take it over, if its
	// user does not exist in its home region (a registration crashed between claim and creation).
	orphanAfter = 5 * time.Minute
	// claimWindow bounds a registration from its claim to its commit. It is far below orphanAfter, so
	// a claim is never taken over while the registration that made it can still commit.
	claimWindow = time.Minute
)

// claim is a row of auth.email_claims as the directory reports it.
type claim struct {
	UserID     shardkey.ID `json:"user_id"`
	HomeRegion string      `json:"home_region"`
	CreatedAt  time.Time   `json:"created_at"`
}

// claimRequest is the body of POST /internal/email-claims.
type claimRequest struct {
	EmailHash  string      `json:"email_hash"`
	UserID     shardkey.ID `json:"user_id"`
	HomeRegion string      `json:"home_region"`
	hash       emailHash
}

func (r *claimRequest) Validate() map[string]string {
	f := map[string]string{}
	h, err := parseEmailHash(r.EmailHash)
	if err != nil {
		f["email_hash"] = err.Error()
	}
	r.hash = h
	if r.UserID.Kind() != shardkey.KindUser {
		f["user_id"] = "must be a user ID"
	}
	if r.HomeRegion == "" || len(r.HomeRegion) > maxRegionName {
		f["home_region"] = "is required"
	}
	return f
}

func (s *Service) topology() (*topology.Topology, error) {
	tab := s.a.Topology()
	if tab == nil {
		return nil, apierror.Unavailable("the node has no topology yet", time.Second)
	}
	return tab.Topology(), nil
}

// claimEmail reserves h for userID homed in home, at the directory region. It returns errEmailTaken
// when another user holds it.
func (s *Service) claimEmail(ctx context.Context, h emailHash, userID shardkey.ID, home string) error {
	t, err := s.topology()
	if err != nil {
		return err
	}
	dir, ksid, err := directory(t, h)
	if err != nil {
		return err
	}
	if dir.Name == s.a.Region {
		return s.claimLocal(ctx, ksid, h, userID, home)
	}
	err = s.a.Peers.Call(ctx, dir.Name, http.MethodPost, internalPath("/internal/email-claims"),
		claimRequest{EmailHash: h.String(), UserID: userID, HomeRegion: home}, nil)
	var e *apierror.Error
	if errors.As(err, &e) && e.Status == http.StatusConflict {
		return errEmailTaken
	}
	if err != nil {
		return peerError(ctx, dir.Name, err)
	}
	return nil
}

// lookupEmail returns the claim of h, if any.
func (s *Service) lookupEmail(ctx context.Context, h emailHash) (claim, bool, error) {
	t, err := s.topology()
	if err != nil {
		return claim{}, false, err
	}
	dir, ksid, err := directory(t, h)
	if err != nil {
		return claim{}, false, err
	}
	if dir.Name == s.a.Region {
		return s.lookupLocal(ctx, ksid, h)
	}
	var c claim
	err = s.a.Peers.Call(ctx, dir.Name, http.MethodGet, internalPath("/internal/email-claims/"+h.String()), nil, &c)
	var e *apierror.Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return claim{}, false, nil
	}
	if err != nil {
		return claim{}, false, peerError(ctx, dir.Name, err)
	}
	return c, true, nil
}

// releaseEmail drops h's claim if userID still holds it.
func (s *Service) releaseEmail(ctx context.Context, h emailHash, userID shardkey.ID) error {
	t, err := s.topology()
	if err != nil {
		return err
	}
	dir, ksid, err := directory(t, h)
	if err != nil {
		return err
	}
	if dir.Name == s.a.Region {
		return s.releaseLocal(ctx, ksid, h, userID)
	}
	err = s.a.Peers.Call(ctx, dir.Name, http.MethodDelete,
		internalPath("/internal/email-claims/"+h.String()+"?user_id="+userID.String()), nil, nil)
	if err != nil {
		return peerError(ctx, dir.Name, err)
	}
	return nil
}

// claimLocal runs the claim on this region's directory shard. The primary key (ksid, email_hash)
// decides races between regions: one INSERT wins, the others read the winner.
func (s *Service) claimLocal(ctx context.Context, ksid shardkey.KeyspaceID, h emailHash, userID shardkey.ID, home string) error {
	routed, err := s.a.WriteShard(ctx, ksid)
	if err != nil {
		return err
	}
	db := routed.Pool
	// A claim released between our INSERT and our SELECT makes us try again; twice is plenty.
	for range 3 {
		now := s.now()
		tag, err := db.Exec(ctx, `
			INSERT INTO auth.email_claims (ksid, email_hash, user_id, home_region, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ksid, email_hash) DO NOTHING`,
			ksid.Bytes(), h[:], userID.Bytes(), home, now)
		if err != nil {
			return fmt.Errorf("accounts: claiming an email: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		cur, found, err := s.lookupLocal(ctx, ksid, h)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if cur.UserID == userID {
			return nil // a retried claim
		}
		if now.Sub(cur.CreatedAt) < orphanAfter {
			return errEmailTaken
		}
		exists, err := s.userExists(ctx, cur.UserID, cur.HomeRegion)
		if err != nil {
			return err
		}
		if exists {
			return errEmailTaken
		}
		// An orphan: its registration never created the user. Take it over, unless someone else
		// just did (the user_id condition makes this a compare-and-swap).
		tag, err = db.Exec(ctx, `
			UPDATE auth.email_claims SET user_id = $3, home_region = $4, created_at = $5
			WHERE ksid = $1 AND email_hash = $2 AND user_id = $6`,
			ksid.Bytes(), h[:], userID.Bytes(), home, now, cur.UserID.Bytes())
		if err != nil {
			return fmt.Errorf("accounts: taking over an email claim: %w", err)
		}
		if tag.RowsAffected() == 1 {
			s.a.Log.Info("took over an orphaned email claim", "orphan_user", cur.UserID.String(), "orphan_region", cur.HomeRegion)
			return nil
		}
		return errEmailTaken
	}
	return errEmailTaken
}

func (s *Service) lookupLocal(ctx context.Context, ksid shardkey.KeyspaceID, h emailHash) (claim, bool, error) {
	routed, err := s.a.ReadShard(ksid)
	if err != nil {
		return claim{}, false, err
	}
	var (
		c  claim
		id []byte
	)
	err = routed.Pool.QueryRow(ctx, `SELECT user_id, home_region, created_at FROM auth.email_claims WHERE ksid = $1 AND email_hash = $2`,
		ksid.Bytes(), h[:]).Scan(&id, &c.HomeRegion, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return claim{}, false, nil
	}
	if err != nil {
		return claim{}, false, fmt.Errorf("accounts: reading an email claim: %w", err)
	}
	if c.UserID, err = shardkey.IDFromBytes(id); err != nil {
		return claim{}, false, fmt.Errorf("accounts: stored claim: %w", err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, true, nil
}

func (s *Service) releaseLocal(ctx context.Context, ksid shardkey.KeyspaceID, h emailHash, userID shardkey.ID) error {
	routed, err := s.a.WriteShard(ctx, ksid)
	if err != nil {
		return err
	}
	if _, err := routed.Pool.Exec(ctx, `DELETE FROM auth.email_claims WHERE ksid = $1 AND email_hash = $2 AND user_id = $3`,
		ksid.Bytes(), h[:], userID.Bytes()); err != nil {
		return fmt.Errorf("accounts: releasing an email claim: %w", err)
	}
	return nil
}

// userExists asks the user's home region whether the user row exists (deleted or not: a soft-deleted
// user keeps its email).
func (s *Service) userExists(ctx context.Context, id shardkey.ID, homeHint string) (bool, error) {
	region := s.regionOf(id, homeHint)
	if region == s.a.Region {
		return s.userExistsLocal(ctx, id)
	}
	var out struct {
		Exists bool `json:"exists"`
	}
	if err := s.a.Peers.Call(ctx, region, http.MethodGet, internalPath("/internal/users/"+id.String()+"/exists"), nil, &out); err != nil {
		return false, peerError(ctx, region, err)
	}
	return out.Exists, nil
}

func (s *Service) userExistsLocal(ctx context.Context, id shardkey.ID) (bool, error) {
	routed, err := s.a.ReadShard(id.KeyspaceID())
	if err != nil {
		return false, err
	}
	var exists bool
	err = routed.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth.users WHERE ksid = $1 AND id = $2)`,
		routed.Route.KeyspaceID.Bytes(), id.Bytes()).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("accounts: checking a user: %w", err)
	}
	return exists, nil
}

// Internal handlers: the directory and home-region halves of the protocol, for other regions' nodes.

func (s *Service) handleClaim(w http.ResponseWriter, r *http.Request) error {
	var req claimRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	t, err := s.topology()
	if err != nil {
		return err
	}
	dir, ksid, err := directory(t, req.hash)
	if err != nil {
		return err
	}
	if dir.Name != s.a.Region {
		// The caller's topology disagrees with ours (a region being added): refuse rather than
		// create a claim where nobody will look for it.
		return apierror.Unavailable("this region is not the email's directory region", time.Second)
	}
	if err := s.claimLocal(r.Context(), ksid, req.hash, req.UserID, req.HomeRegion); err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, map[string]bool{"claimed": true})
	return nil
}

func (s *Service) claimTarget(r *http.Request) (shardkey.KeyspaceID, emailHash, error) {
	h, err := parseEmailHash(mux.Vars(r)["hash"])
	if err != nil {
		return 0, h, apierror.Invalid(map[string]string{"hash": err.Error()})
	}
	t, err := s.topology()
	if err != nil {
		return 0, h, err
	}
	_, ksid, err := directory(t, h)
	return ksid, h, err
}

func (s *Service) handleLookup(w http.ResponseWriter, r *http.Request) error {
	ksid, h, err := s.claimTarget(r)
	if err != nil {
		return err
	}
	c, found, err := s.lookupLocal(r.Context(), ksid, h)
	if err != nil {
		return err
	}
	if !found {
		return apierror.NotFound("email claim")
	}
	rest.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (s *Service) handleRelease(w http.ResponseWriter, r *http.Request) error {
	ksid, h, err := s.claimTarget(r)
	if err != nil {
		return err
	}
	id, err := shardkey.ParseIDOfKind(r.URL.Query().Get("user_id"), shardkey.KindUser)
	if err != nil {
		return apierror.Invalid(map[string]string{"user_id": "must be a user ID"})
	}
	if err := s.releaseLocal(r.Context(), ksid, h, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleUserExists(w http.ResponseWriter, r *http.Request) error {
	id, err := shardkey.ParseIDOfKind(mux.Vars(r)["id"], shardkey.KindUser)
	if err != nil {
		return apierror.Invalid(map[string]string{"id": "must be a user ID"})
	}
	exists, err := s.userExistsLocal(r.Context(), id)
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, map[string]bool{"exists": exists})
	return nil
}
