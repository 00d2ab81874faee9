package directory

import (
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// The claim body checks itself when rest decodes it.
var _ rest.Validator = (*claimRequest)(nil)

// claimRequest is the body of POST /internal/email-claims.
type claimRequest struct {
	EmailHash  string      `json:"email_hash"`
	UserID     shardkey.ID `json:"user_id"`
	HomeRegion string      `json:"home_region"`
	hash       Hash
}

// Validate checks the request and parses its hash.
func (r *claimRequest) Validate() map[string]string {
	f := map[string]string{}
	h, err := ParseHash(r.EmailHash)
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

// maxRegionName bounds home_region, as accounts bounds a registration's region.
const maxRegionName = 64
