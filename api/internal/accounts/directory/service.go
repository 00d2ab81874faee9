package directory

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// The claim protocol's clocks.
const (
	// OrphanAfter is how old a claim must be before another registration may take it over, if its
	// user does not exist in its home region (a registration crashed between claim and creation).
	OrphanAfter = 5 * time.Minute
	// ClaimWindow bounds a registration from its claim to its commit. It is far below OrphanAfter, so
	// a claim is never taken over while the registration that made it can still commit.
	ClaimWindow = time.Minute
)

// ErrTaken is the error of a claim on an email another user holds. It is the public 409 that
// registration answers with, and the status a directory region answers a peer's claim with.
var ErrTaken = apierror.Conflict("email_taken", "an account with this email already exists")

// Users is what the directory needs from the accounts core: whether a user row exists in its home
// region (deleted or not), asked before an orphaned claim is taken over.
type Users interface {
	UserExists(ctx context.Context, id shardkey.ID, homeHint string) (bool, error)
}

// Directory is this node's side of the email directory: it claims, looks up and releases email
// hashes, locally when this region is the hash's directory region and through a peer otherwise.
type Directory struct {
	a     *feature.Deps
	users Users
}

// New returns the directory of node a; users answers for the accounts core.
func New(a *feature.Deps, users Users) *Directory { return &Directory{a: a, users: users} }

func (d *Directory) now() time.Time {
	if d.a.Now != nil {
		return d.a.Now().UTC()
	}
	return time.Now().UTC()
}

// claim is a row of auth.email_claims as the directory reports it.
type Claim struct {
	UserID     shardkey.ID `json:"user_id"`
	HomeRegion string      `json:"home_region"`
	CreatedAt  time.Time   `json:"created_at"`
}

func (d *Directory) topology() (*topology.Topology, error) {
	tab := d.a.Topology()
	if tab == nil {
		return nil, apierror.Unavailable("the node has no topology yet", time.Second)
	}
	return tab.Topology(), nil
}

// Claim reserves h for userID homed in home, at the directory region. It returns ErrTaken
// when another user holds it.
func (d *Directory) Claim(ctx context.Context, h Hash, userID shardkey.ID, home string) error {
	t, err := d.topology()
	if err != nil {
		return err
	}
	dir, ksid, err := Locate(t, h)
	if err != nil {
		return err
	}
	if dir.Name == d.a.Region {
		return d.claimLocal(ctx, ksid, h, userID, home)
	}
	err = d.a.Peers.Call(ctx, dir.Name, http.MethodPost, feature.InternalPath("/internal/email-claims"),
		claimRequest{EmailHash: h.String(), UserID: userID, HomeRegion: home}, nil)
	var e *apierror.Error
	if errors.As(err, &e) && e.Status == http.StatusConflict {
		return ErrTaken
	}
	if err != nil {
		return feature.PeerError(ctx, dir.Name, err)
	}
	return nil
}

// Lookup returns the claim of h, if any.
func (d *Directory) Lookup(ctx context.Context, h Hash) (Claim, bool, error) {
	t, err := d.topology()
	if err != nil {
		return Claim{}, false, err
	}
	dir, ksid, err := Locate(t, h)
	if err != nil {
		return Claim{}, false, err
	}
	if dir.Name == d.a.Region {
		return d.lookupLocal(ctx, ksid, h)
	}
	var c Claim
	err = d.a.Peers.Call(ctx, dir.Name, http.MethodGet, feature.InternalPath("/internal/email-claims/"+h.String()), nil, &c)
	var e *apierror.Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, feature.PeerError(ctx, dir.Name, err)
	}
	return c, true, nil
}

// Release drops h's claim if userID still holds it.
func (d *Directory) Release(ctx context.Context, h Hash, userID shardkey.ID) error {
	t, err := d.topology()
	if err != nil {
		return err
	}
	dir, ksid, err := Locate(t, h)
	if err != nil {
		return err
	}
	if dir.Name == d.a.Region {
		return d.releaseLocal(ctx, ksid, h, userID)
	}
	err = d.a.Peers.Call(ctx, dir.Name, http.MethodDelete,
		feature.InternalPath("/internal/email-claims/"+h.String()+"?user_id="+userID.String()), nil, nil)
	if err != nil {
		return feature.PeerError(ctx, dir.Name, err)
	}
	return nil
}
