// Package resolve decides which region serves a request, from what the request says and the
// topology, with no database lookup and no I/O: every ID the API hands out carries its owner's keyspace
// ID, and the compiled topology maps a keyspace ID to its region (after the relocation map).
//
// Resolution order, first match wins:
//
//  1. The session endpoints, by their own rules only (never by an ID in the query or path, which a
//     client chooses: a registration sent with ?user_id=<someone in another region> must not home the
//     new user there, nor a login or a refresh token go to a region the client picked):
//     a. POST /auth/register: the region named in the body's "region", else the router's own.
//     b. Login and the OAuth flow: the router's own region (nodes find a user of another region
//     themselves).
//     c. POST /auth/refresh and /auth/logout with a refresh token in the body: the token family's
//     region; a refresh without one the router's own, a logout without one by its caller (rule 5).
//  2. GET /jobs/search?scope=global: the router's own region; its node fans out to the others.
//  3. An object ID in the path (/jobs/{id}, /reviews/{id}, /users/{id}/profile, /auth/api-keys/{id},
//     /proposals/{id}, /contracts/{id} and its actions; not /jobs/{id}/proposals nor
//     /proposals/{id}/accept, which act on the caller's own shard):
//     the object's owner's region. Reading someone else's public object goes where it lives.
//  4. An owner in the query (owner_id, user_id, job_id): that owner's region.
//  5. The caller: the region of the verified access token's ksid, or of the API key's owner.
//  6. Anything else (anonymous requests): the router's own region.
//
// An ID that does not parse is ignored (the node answers 400 or 404 in the contract's words); an ID
// that parses but that no keyrange owns cannot name an existing object, and is a 404 at the edge.
package resolve

import (
	"encoding/json"
	"errors"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/router/internal/apipath"
	"github.com/8thdegree/meridian/router/internal/credential"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// ErrUnroutable is returned for an object ID whose keyspace ID no keyrange owns.
var ErrUnroutable = errors.New("resolve: no region owns the object's keyspace ID")

// Reason says which rule decided; it is logged and counted.
type Reason string

// The rules, in order.
const (
	RegisterRegion Reason = "register_region"
	Login          Reason = "login"
	RefreshToken   Reason = "refresh_token"
	GlobalScope    Reason = "global_scope"
	PathID         Reason = "path_id"
	QueryID        Reason = "query_id"
	Token          Reason = "token"
	APIKey         Reason = "api_key"
	OwnRegion      Reason = "own_region"
)

// Caller is what the Authorization header said about who calls.
type Caller struct {
	KSID shardkey.KeyspaceID
	// By is Token or APIKey; empty for an anonymous request.
	By Reason
}

// Target is the decision.
type Target struct {
	Region string
	// KSID is the keyspace ID the decision followed (after relocation), when one did.
	KSID    shardkey.KeyspaceID
	HasKSID bool
	By      Reason
}

// Request is what resolution looks at.
type Request struct {
	Info     apipath.Info
	RawQuery string
	// Body is the request body, read only for the auth endpoints that route by it.
	Body   []byte
	Caller Caller
}

// Resolve decides the region of req. tab is the topology in service and own the router's region.
func Resolve(tab *topology.Table, own string, req Request) (Target, error) {
	switch req.Info.Endpoint {
	case apipath.Register:
		var b struct {
			Region string `json:"region"`
		}
		if len(req.Body) > 0 && json.Unmarshal(req.Body, &b) == nil && b.Region != "" {
			if _, ok := tab.Topology().Region(b.Region); ok {
				return Target{Region: b.Region, By: RegisterRegion}, nil
			}
		}
		// No region, or one that does not exist: the router's own region's node answers (and refuses
		// an unknown region with a field error).
		return Target{Region: own, By: OwnRegion}, nil
	case apipath.Login, apipath.OAuth:
		return Target{Region: own, By: Login}, nil
	case apipath.Refresh, apipath.Logout:
		var b struct {
			RefreshToken string `json:"refresh_token"`
		}
		if len(req.Body) > 0 && json.Unmarshal(req.Body, &b) == nil {
			if fam, err := credential.RefreshFamily(b.RefreshToken); err == nil {
				return byKSID(tab, fam.KeyspaceID(), RefreshToken)
			}
		}
		if req.Info.Endpoint == apipath.Refresh {
			return Target{Region: own, By: OwnRegion}, nil
		}
		return byCaller(tab, own, req.Caller), nil
	}
	if req.Info.Endpoint == apipath.Search && apipath.Scope(req.RawQuery) == "global" {
		return Target{Region: own, By: GlobalScope}, nil
	}
	if req.Info.ID != "" {
		if id, err := shardkey.ParseID(req.Info.ID); err == nil {
			return byKSID(tab, id.KeyspaceID(), PathID)
		}
	}
	if q := apipath.QueryID(req.RawQuery); q != "" {
		if id, err := shardkey.ParseID(q); err == nil {
			return byKSID(tab, id.KeyspaceID(), QueryID)
		}
	}
	return byCaller(tab, own, req.Caller), nil
}

// byCaller is the caller's region (rule 5), else the router's own (rule 6).
func byCaller(tab *topology.Table, own string, c Caller) Target {
	if c.By != "" {
		if t, err := byKSID(tab, c.KSID, c.By); err == nil {
			return t
		}
		// A verified caller whose ksid no keyrange owns: the node of the router's region answers (the
		// user cannot exist there either, and it says so in the contract's words).
	}
	return Target{Region: own, By: OwnRegion}
}

func byKSID(tab *topology.Table, k shardkey.KeyspaceID, by Reason) (Target, error) {
	r, err := tab.Lookup(k)
	if err != nil || r.Region == nil {
		return Target{By: by}, ErrUnroutable
	}
	return Target{Region: r.Region.Name, KSID: r.KeyspaceID, HasKSID: true, By: by}, nil
}
