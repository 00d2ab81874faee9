// Package apipath classifies request paths at the edge: whether a path is part of the public API
// (under /api/v1 or its /api alias), which route template it matches (the label of metrics and access
// logs, so their cardinality stays bounded whatever clients send), which endpoints need special
// routing (registration, login, token refresh), and which path segment or query parameter names the
// object whose owner's region must serve the request.
//
// It knows the contract's paths (docs API.md) and nothing else: an unknown path under /api is still
// proxied (the node answers 404), under the template "other".
package apipath

import "strings"

// Endpoint is the kind of endpoint a path names, where it matters to routing.
type Endpoint uint8

const (
	// Other is every endpoint routed by the object it names or by its caller.
	Other Endpoint = iota
	// Register creates a user in the region the body names (else the router's own).
	Register
	// Login works for users of every region: the router's own region forwards it.
	Login
	// Refresh exchanges a refresh token; the token names its family, and so its owner's region.
	Refresh
	// Logout revokes a refresh token family; routed like Refresh when the body carries the token.
	Logout
	// OAuth is the OAuth2 login flow (start and callback): the router's own region, like Login.
	OAuth
	// Search is job search; scope=global is fanned out by the node that receives it.
	Search
)

// TokenOptional reports whether the endpoint starts or ends a session (registration, login, OAuth,
// refresh, logout): a client calls it precisely when its access token may have expired, so a stale
// Authorization header there is ignored at the edge rather than refused.
func (e Endpoint) TokenOptional() bool {
	return e == Register || e == Login || e == Refresh || e == Logout || e == OAuth
}

// Info is what the router needs to know about a path.
type Info struct {
	// Template is the route template relative to /api/v1 ("/jobs/{id}"), or "other".
	Template string
	Endpoint Endpoint
	// ID is the path segment that names the object served ("job_…"), or "". It is not validated here.
	ID string
}

// Prefixes of the public API: the canonical one first, then the 8thDegree alias.
const (
	prefixV1    = "/api/v1"
	prefixAlias = "/api"
)

// OtherTemplate labels paths under /api that match no template of the contract.
const OtherTemplate = "other"

// maxSegments bounds the segments examined; no template has more than four.
const maxSegments = 6

// Templates returns every template Parse can return, "other" included (to pre-create metrics).
func Templates() []string {
	return []string{
		"/auth/register", "/auth/login", "/auth/refresh", "/auth/logout", "/auth/jwks.json",
		"/auth/oauth/{provider}", "/auth/oauth/{provider}/callback", "/auth/oauth/{provider}/link", "/auth/api-keys", "/auth/api-keys/{id}",
		"/auth/verify-email", "/auth/verify-email/resend",
		"/users/me", "/users/profile", "/users/settings", "/users/{id}/profile",
		"/jobs", "/jobs/search", "/jobs/matching", "/jobs/{id}",
		"/reviews", "/reviews/stats", "/reviews/{id}", "/openapi.json",
		"/jobs/{id}/proposals", "/proposals", "/proposals/{id}", "/proposals/{id}/accept",
		"/contracts", "/contracts/{id}", "/contracts/{id}/complete", "/contracts/{id}/cancel",
		"/matching/events", "/admin/fairness", "/admin/matching/models",
		OtherTemplate,
	}
}

// Parse classifies an URL path (decoded, as in url.URL.Path). ok is false when the path is not part of
// the public API: outside /api, not canonical ("//", "/./", "/../"), which a node's router would
// clean into another path, one the edge did not check, or under the nodes' internal prefix
// (/api/v1/internal), which only nodes call, each other, and which the edge does not even admit
// exists (any method is a 404, never the node's 405). It does not allocate.
func Parse(path string) (info Info, ok bool) {
	var rest string
	switch {
	case path == prefixV1 || path == prefixAlias:
		return Info{Template: OtherTemplate}, true
	case strings.HasPrefix(path, prefixV1+"/"):
		rest = path[len(prefixV1)+1:]
	case strings.HasPrefix(path, prefixAlias+"/"):
		rest = path[len(prefixAlias)+1:]
	default:
		return Info{}, false
	}
	if !canonical(rest) || internal(rest) {
		return Info{}, false
	}
	// A trailing slash is the same route ("/jobs/" and "/jobs").
	rest = strings.TrimSuffix(rest, "/")
	var segs [maxSegments]string
	n := 0
	for rest != "" {
		if n == maxSegments {
			return Info{Template: OtherTemplate}, true
		}
		segs[n], rest, _ = strings.Cut(rest, "/")
		n++
	}
	return match(segs[:n]), true
}

// match maps the segments after the prefix to the contract's templates. Literal segments win over
// {id} ("/jobs/search" is not a job).
func match(s []string) Info {
	other := Info{Template: OtherTemplate}
	switch len(s) {
	case 1:
		switch s[0] {
		case "jobs":
			return Info{Template: "/jobs"}
		case "reviews":
			return Info{Template: "/reviews"}
		case "proposals":
			return Info{Template: "/proposals"}
		case "contracts":
			return Info{Template: "/contracts"}
		case "openapi.json":
			return Info{Template: "/openapi.json"}
		}
	case 2:
		switch s[0] {
		case "auth":
			switch s[1] {
			case "register":
				return Info{Template: "/auth/register", Endpoint: Register}
			case "login":
				return Info{Template: "/auth/login", Endpoint: Login}
			case "refresh":
				return Info{Template: "/auth/refresh", Endpoint: Refresh}
			case "logout":
				return Info{Template: "/auth/logout", Endpoint: Logout}
			case "jwks.json":
				return Info{Template: "/auth/jwks.json"}
			case "api-keys":
				return Info{Template: "/auth/api-keys"}
			case "verify-email":
				// The token names its user; the node that takes it answers 421 for another region's.
				return Info{Template: "/auth/verify-email"}
			}
		case "users":
			switch s[1] {
			case "me":
				return Info{Template: "/users/me"}
			case "profile":
				return Info{Template: "/users/profile"}
			case "settings":
				return Info{Template: "/users/settings"}
			}
		case "jobs":
			switch s[1] {
			case "search":
				return Info{Template: "/jobs/search", Endpoint: Search}
			case "matching":
				return Info{Template: "/jobs/matching"}
			}
			return Info{Template: "/jobs/{id}", ID: s[1]}
		case "reviews":
			if s[1] == "stats" {
				return Info{Template: "/reviews/stats"}
			}
			return Info{Template: "/reviews/{id}", ID: s[1]}
		case "proposals":
			// Its author's region, where the proposal and its cover letter live.
			return Info{Template: "/proposals/{id}", ID: s[1]}
		case "contracts":
			// Its client's region, where the contract lives.
			return Info{Template: "/contracts/{id}", ID: s[1]}
		case "matching":
			if s[1] == "events" {
				// The list lives on the caller's shard.
				return Info{Template: "/matching/events"}
			}
		case "admin":
			if s[1] == "fairness" {
				// The caller's region answers, asking the region named in the query itself.
				return Info{Template: "/admin/fairness"}
			}
		}
	case 3:
		switch {
		case s[0] == "auth" && s[1] == "oauth":
			return Info{Template: "/auth/oauth/{provider}", Endpoint: OAuth}
		case s[0] == "auth" && s[1] == "api-keys":
			return Info{Template: "/auth/api-keys/{id}", ID: s[2]}
		case s[0] == "auth" && s[1] == "verify-email" && s[2] == "resend":
			return Info{Template: "/auth/verify-email/resend"}
		case s[0] == "users" && s[2] == "profile":
			return Info{Template: "/users/{id}/profile", ID: s[1]}
		case s[0] == "jobs" && s[2] == "proposals":
			// Not the job's region: the caller's. A freelancer's proposal is written on their own shard,
			// and the job's owner lists the reference rows on theirs.
			return Info{Template: "/jobs/{id}/proposals"}
		case s[0] == "proposals" && s[2] == "accept":
			// The job's owner accepts on their own shard, which holds the proposal's reference row.
			return Info{Template: "/proposals/{id}/accept"}
		case s[0] == "contracts" && (s[2] == "complete" || s[2] == "cancel"):
			return Info{Template: "/contracts/{id}/" + s[2], ID: s[1]}
		case s[0] == "admin" && s[1] == "matching" && s[2] == "models":
			return Info{Template: "/admin/matching/models"}
		}
	case 4:
		if s[0] == "auth" && s[1] == "oauth" && s[3] == "callback" {
			return Info{Template: "/auth/oauth/{provider}/callback", Endpoint: OAuth}
		}
		if s[0] == "auth" && s[1] == "oauth" && s[3] == "link" {
			// Not the OAuth flow: the caller links to their own account, so their region serves it.
			return Info{Template: "/auth/oauth/{provider}/link"}
		}
	}
	return other
}

// internalSegment is the first segment of the nodes' node-to-node routes.
const internalSegment = "internal"

// internal reports whether rest (a path after "/api/v1/" or "/api/") is under the internal prefix.
func internal(rest string) bool {
	seg, _, _ := strings.Cut(rest, "/")
	return seg == internalSegment
}

// canonical reports whether rest (a path after "/api/v1/") has no empty, "." or ".." segment except a
// final empty one (a trailing slash).
func canonical(rest string) bool {
	for rest != "" {
		seg, tail, more := strings.Cut(rest, "/")
		if (seg == "" && more) || seg == "." || seg == ".." {
			return false
		}
		rest = tail
	}
	return true
}

// QueryID returns the value of the first query parameter that names the owner of the objects read
// (owner_id, user_id, job_id), still escaped; "" if none. Their owner's region serves the request.
// reviewee_id is not among them on purpose: a review is written where its author's request lands and
// the node replays it when needed. IDs are plain ASCII, so an escaped value simply fails to parse
// later. It does not allocate.
func QueryID(rawQuery string) string {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "owner_id", "user_id", "job_id":
			if v != "" {
				return v
			}
		}
	}
	return ""
}

// Scope returns the value of the scope query parameter ("global", "region" or "").
func Scope(rawQuery string) string {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if k, v, _ := strings.Cut(kv, "="); k == "scope" {
			return v
		}
	}
	return ""
}
