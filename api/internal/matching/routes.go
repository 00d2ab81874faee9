package matching

import (
	"net/http"
	"strconv"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/openapi"
)

// Routes returns the engine's endpoints. /jobs/matching must come before the jobs feature's
// /jobs/{id} (gorilla/mux tries routes in order; the node puts these first).
func (s *Service) Routes() []feature.Route {
	q := func(name, desc string, schema map[string]any) map[string]any {
		return map[string]any{"name": name, "in": "query", "description": desc, "schema": schema}
	}
	return []feature.Route{
		{
			Name: "matchJobs", Method: http.MethodGet, Path: "/jobs/matching", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Client, authn.Freelancer}, Scope: ScopeRead, Handler: s.match,
			Doc: openapi.Operation("matching", "Match freelancers to a job, or jobs to a freelancer",
				"With job_id (the caller's own job; anyone else's is a 404): the best available freelancers. Without "+
					"(freelancers only): the best open jobs for the caller's profile. Candidates are the nearest vectors "+
					"of the region's index, hard-filtered (availability, rate against budget, on-site jobs), then scored "+
					"by the region's serving model over five signals (similarity, weighted skill coverage, verified "+
					"rating, price fit, availability); reasons give each signal's exact contribution. With "+
					"scope=global every region ranks its own people and the node merges the best (partial, with the "+
					"missing regions in failed_shards, when one does not answer). fairness reports exposure and impact "+
					"ratios per group (country, region, self-declared attributes) against the eligible pool; list_id "+
					"names what was shown, for POST /matching/events.",
				[]any{
					q("job_id", "The caller's job.", map[string]any{"type": "string", "pattern": "^job_[0-9a-z]{32}$"}),
					q("limit", "1 to "+strconv.Itoa(MaxLimit)+" (default "+strconv.Itoa(DefaultLimit)+").",
						map[string]any{"type": "integer", "minimum": 1, "maximum": MaxLimit, "default": DefaultLimit}),
					q("scope", "region (default) or global.", map[string]any{"type": "string", "enum": []string{"region", "global"}, "default": "region"}),
				}, nil, openapi.Responses(http.StatusOK, "The ranked list.", "MatchPage", 400, 401, 403, 404, 409, 503)),
		},
		{
			Name: "matchingEvent", Method: http.MethodPost, Path: "/matching/events", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Client, authn.Freelancer}, Scope: ScopeRead, Handler: s.event,
			Doc: openapi.Operation("matching", "Report an opened or dismissed item of a list",
				"The item must be the one shown at that position of a list served to the caller. A repeat keeps the first. "+
					"Applications, hires, completions and ratings are recorded from hiring without a call.",
				nil, openapi.JSONBody("MatchEvent"),
				map[string]any{"202": map[string]any{"description": "Recorded."}, "400": openapi.ErrorResponse(400),
					"401": openapi.ErrorResponse(401), "403": openapi.ErrorResponse(403), "404": openapi.ErrorResponse(404),
					"503": openapi.ErrorResponse(503)}),
		},
		{
			Name: "adminFairness", Method: http.MethodGet, Path: "/admin/fairness", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Admin, authn.Compliance}, Handler: s.adminFairness,
			Doc: openapi.Operation("matching", "Fairness of a region's matching lists",
				"Day by day (UTC) over [from, to): exposure of each group (position weights 1/log2(1+rank), as shares), "+
					"the impact ratio of each group (its selection rate over the highest group's; below 0.8 is flagged, "+
					"the four-fifths rule), and the lists that were flagged. The region's own node answers.",
				[]any{
					q("region", "Default: the caller's region.", map[string]any{"type": "string"}),
					q("from", "RFC 3339 or a date; default 7 days before to.", map[string]any{"type": "string"}),
					q("to", "RFC 3339 or a date; default now.", map[string]any{"type": "string"}),
				}, nil, openapi.Responses(http.StatusOK, "The report.", "FairnessReport", 400, 401, 403, 503)),
		},
		{
			Name: "adminMatchingModels", Method: http.MethodGet, Path: "/admin/matching/models", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Admin}, Handler: s.adminModels,
			Doc: openapi.Operation("matching", "Ranking models per region",
				"Every region's models (versioned and kept), which one serves (0: the hand-set weights) and their "+
					"evaluation figures. Train, evaluate, promote and roll back with the matchctl command.",
				nil, nil, openapi.Responses(http.StatusOK, "The models.", "MatchingModels", 401, 403, 503)),
		},
		{
			Name: "internalMatchingRank", Method: http.MethodPost, Path: rankPath, Access: feature.Internal, Handler: s.rankInternal,
			Doc: internalDoc("A region's part of a global matching list", "Ranks this region's candidates for the subject's vector."),
		},
		{
			Name: "internalMatchingFairness", Method: http.MethodGet, Path: fairnessPath, Access: feature.Internal, Handler: s.fairnessInternal,
			Doc: internalDoc("A region's fairness report", "GET /admin/fairness for this node's region."),
		},
		{
			Name: "internalMatchingModels", Method: http.MethodGet, Path: modelsPath, Access: feature.Internal, Handler: s.modelsInternal,
			Doc: internalDoc("A region's models", "GET /admin/matching/models for this node's region."),
		},
	}
}

func internalDoc(summary, desc string) map[string]any {
	return map[string]any{"summary": summary, "description": "Node-to-node only. " + desc, "tags": []string{"internal"}, "x-internal": true}
}

// Schemas returns the OpenAPI component schemas of the routes.
func Schemas() map[string]any {
	num := map[string]any{"type": "number"}
	groupMap := map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "object", "additionalProperties": num}}
	reason := map[string]any{"type": "object", "required": []string{"signal", "contribution", "text"}, "properties": map[string]any{
		"signal":       map[string]any{"type": "string", "enum": weightNames},
		"contribution": map[string]any{"type": "number", "description": "This signal's part of the score; the parts sum to the score."},
		"text":         map[string]any{"type": "string"}}}
	return map[string]any{
		"MatchPage": map[string]any{"type": "object", "required": []string{"list_id", "items", "fairness", "model", "partial", "failed_shards"},
			"properties": map[string]any{
				"list_id": map[string]any{"type": "string", "format": "uuid"},
				"items": map[string]any{"type": "array", "items": map[string]any{"type": "object", "required": []string{"score", "reasons", "region"},
					"properties": map[string]any{
						"freelancer_id": map[string]any{"type": "string", "pattern": "^usr_[0-9a-z]{32}$"},
						"job_id":        map[string]any{"type": "string", "pattern": "^job_[0-9a-z]{32}$"},
						"score":         map[string]any{"type": "number"},
						"reasons":       map[string]any{"type": "array", "items": reason},
						"region":        map[string]any{"type": "string"}}}},
				"fairness": map[string]any{"type": "object", "description": "Exposure and impact ratio per group attribute and group, the flagged groups (attribute=group), whether the list was re-ranked and what that cost in relevance."},
				"model": map[string]any{"type": "object", "required": []string{"id", "version"}, "properties": map[string]any{
					"id": map[string]any{"type": "string"}, "version": map[string]any{"type": "integer", "minimum": 0}}},
				"partial":       map[string]any{"type": "boolean"},
				"failed_shards": map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			}},
		"MatchEvent": map[string]any{"type": "object", "additionalProperties": false, "required": []string{"list_id", "type", "item_id", "position"},
			"properties": map[string]any{
				"list_id":  map[string]any{"type": "string", "format": "uuid"},
				"type":     map[string]any{"type": "string", "enum": []string{"opened", "dismissed"}},
				"item_id":  map[string]any{"type": "string"},
				"position": map[string]any{"type": "integer", "minimum": 1, "maximum": MaxLimit}}},
		"FairnessReport": map[string]any{"type": "object", "required": []string{"region", "from", "to", "days", "flagged_lists"},
			"properties": map[string]any{
				"region": map[string]any{"type": "string"},
				"from":   map[string]any{"type": "string", "format": "date-time"},
				"to":     map[string]any{"type": "string", "format": "date-time"},
				"days": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
					"day": map[string]any{"type": "string", "format": "date"}, "lists": map[string]any{"type": "integer"},
					"flagged_lists": map[string]any{"type": "integer"}, "exposure": groupMap, "impact_ratio": groupMap,
					"flagged": map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}}},
				"flagged_lists": map[string]any{"type": "array", "items": map[string]any{"type": "object"}}}},
		"MatchingModels": map[string]any{"type": "object", "required": []string{"regions"}, "properties": map[string]any{
			"regions": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
				"region": map[string]any{"type": "string"}, "serving": map[string]any{"type": "integer"},
				"hand_set": map[string]any{"type": "object"}, "models": map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
				"unavailable": map[string]any{"type": "boolean"}}}}}},
	}
}
