package directory

import (
	"net/http"
	"time"

	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/gorilla/mux"
)

// HandleClaim serves POST /internal/email-claims: another region's registration claims an email
// whose directory region is this one.

func (d *Directory) HandleClaim(w http.ResponseWriter, r *http.Request) error {
	var req claimRequest
	if err := rest.Decode(w, r, &req); err != nil {
		return err
	}
	t, err := d.topology()
	if err != nil {
		return err
	}
	dir, ksid, err := Locate(t, req.hash)
	if err != nil {
		return err
	}
	if dir.Name != d.a.Region {
		// The caller's topology disagrees with ours (a region being added): refuse rather than
		// create a claim where nobody will look for it.
		return apierror.Unavailable("this region is not the email's directory region", time.Second)
	}
	if err := d.claimLocal(r.Context(), ksid, req.hash, req.UserID, req.HomeRegion); err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, map[string]bool{"claimed": true})
	return nil
}

func (d *Directory) claimTarget(r *http.Request) (shardkey.KeyspaceID, Hash, error) {
	h, err := ParseHash(mux.Vars(r)["hash"])
	if err != nil {
		return 0, h, apierror.Invalid(map[string]string{"hash": err.Error()})
	}
	t, err := d.topology()
	if err != nil {
		return 0, h, err
	}
	_, ksid, err := Locate(t, h)
	return ksid, h, err
}

// HandleLookup serves GET /internal/email-claims/{hash}.
func (d *Directory) HandleLookup(w http.ResponseWriter, r *http.Request) error {
	ksid, h, err := d.claimTarget(r)
	if err != nil {
		return err
	}
	c, found, err := d.lookupLocal(r.Context(), ksid, h)
	if err != nil {
		return err
	}
	if !found {
		return apierror.NotFound("email claim")
	}
	rest.WriteJSON(w, http.StatusOK, c)
	return nil
}

// HandleRelease serves DELETE /internal/email-claims/{hash}?user_id=.
func (d *Directory) HandleRelease(w http.ResponseWriter, r *http.Request) error {
	ksid, h, err := d.claimTarget(r)
	if err != nil {
		return err
	}
	id, err := shardkey.ParseIDOfKind(r.URL.Query().Get("user_id"), shardkey.KindUser)
	if err != nil {
		return apierror.Invalid(map[string]string{"user_id": "must be a user ID"})
	}
	if err := d.releaseLocal(r.Context(), ksid, h, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
