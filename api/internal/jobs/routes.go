package jobs

import (
	"net/http"
	"strconv"

	"github.com/8thdegree/meridian/api/internal/openapi"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
)

// Routes returns the endpoints of the service. /jobs/search comes before /jobs/{id}
// (gorilla/mux tries routes in order); even out of order, "search" would not parse as a job ID and the
// {id} route would answer 404, never serve the wrong thing.
func (s *Service) Routes() []feature.Route {
	jobID := openapi.PathParam("id", "The job's ID (job_…). A malformed ID, or one of another kind, is a 404.")
	return []feature.Route{
		{
			Name: "searchJobs", Method: http.MethodGet, Path: "/jobs/search", Access: feature.Public, Handler: s.search,
			Doc: op("Search open jobs",
				"Full-text search (PostgreSQL websearch syntax: words, \"quoted phrases\", or, -exclude) over the "+
					"title (weighted highest), description and skills of open jobs, across every shard of the "+
					"region (scope=region, the default) or of every region (scope=global). With skills=, only "+
					"jobs listing at least one of them; with skills= and no q, jobs are ranked by how many of "+
					"the skills they list, then newest first. Results are ordered by rank, then ID, both "+
					"descending. When a shard or region does not answer in time the others' results still come "+
					"back, with partial=true and the missing shards in failed_shards; when none answers, 503.",
				[]any{
					queryParam("q", "Search words (at most "+strconv.Itoa(MaxQuery)+" characters).", map[string]any{"type": "string", "maxLength": MaxQuery}),
					queryParam("skills", "Comma-separated skills; normalised like a job's (at most "+strconv.Itoa(MaxSearchSkills)+").", map[string]any{"type": "string"}),
					limitParam(), cursorParam(),
					queryParam("scope", "region (this region's shards) or global (every region).", map[string]any{"type": "string", "enum": []string{"region", "global"}, "default": "region"}),
				}, nil,
				responses(http.StatusOK, "Ranked open jobs.", "JobSearchPage", http.StatusBadRequest, http.StatusServiceUnavailable)),
		},
		{
			Name: "createJob", Method: http.MethodPost, Path: "/jobs/", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Client}, Scope: ScopeWrite, Handler: s.create,
			Doc: op("Post a job",
				"Clients only, with a verified email (403 email_unverified). The job is stored on the caller's shard with status open. The description is "+
					"rich text and is sanitised; skills are trimmed, lower-cased and deduplicated; the currency "+
					"(default USD) is an ISO 4217 code; budgets are optional, at least 0, with at most two "+
					"decimals, and budget_min may not exceed budget_max.",
				nil, openapi.JSONBody("JobCreate"),
				withHeader(responses(http.StatusCreated, "The new job.", "Job", http.StatusBadRequest, http.StatusUnauthorized,
					http.StatusForbidden, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
					http.StatusMisdirectedRequest, http.StatusServiceUnavailable), "201", "Location", "The job's URL.")),
		},
		{
			Name: "listJobs", Method: http.MethodGet, Path: "/jobs/", Access: feature.Authenticated, Scope: ScopeRead, Handler: s.list,
			Doc: op("List jobs of one owner",
				"Without owner_id, the caller's own jobs in every status; with owner_id, that user's open jobs "+
					"(all of them if it is the caller). Newest first, paginated with an opaque cursor. An owner "+
					"homed in another region is answered with 421 and the region to replay in.",
				[]any{
					queryParam("owner_id", "A user's ID (usr_…).", map[string]any{"type": "string", "pattern": "^usr_[0-9a-z]{32}$"}),
					limitParam(), cursorParam(),
				}, nil,
				responses(http.StatusOK, "One page of jobs.", "JobPage", http.StatusBadRequest, http.StatusUnauthorized,
					http.StatusForbidden, http.StatusMisdirectedRequest)),
		},
		{
			Name: "getJob", Method: http.MethodGet, Path: "/jobs/{id}", Access: feature.Public, Handler: s.get,
			Doc: op("Read a job",
				"Anyone may read any job. A job homed in another region is answered with 421 and the region to replay in.",
				[]any{jobID}, nil,
				responses(http.StatusOK, "The job.", "Job", http.StatusNotFound, http.StatusMisdirectedRequest)),
		},
		{
			Name: "updateJob", Method: http.MethodPatch, Path: "/jobs/{id}", Access: feature.Authenticated, Scope: ScopeWrite, Handler: s.update,
			Doc: op("Change a job",
				"The owner only (anyone else gets 404). Any subset of the create fields, plus status; absent "+
					"fields keep their value; null is accepted only for a budget bound (making it open).",
				[]any{jobID}, openapi.JSONBody("JobUpdate"),
				responses(http.StatusOK, "The job after the change.", "Job", http.StatusBadRequest, http.StatusUnauthorized,
					http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
					http.StatusMisdirectedRequest, http.StatusServiceUnavailable)),
		},
		{
			Name: "deleteJob", Method: http.MethodDelete, Path: "/jobs/{id}", Access: feature.Authenticated, Scope: ScopeWrite, Handler: s.remove,
			Doc: op("Delete a job",
				"The owner only (anyone else gets 404).",
				[]any{jobID}, nil,
				map[string]any{
					"204": map[string]any{"description": "Deleted."},
					"401": errResponse(http.StatusUnauthorized), "403": errResponse(http.StatusForbidden),
					"404": errResponse(http.StatusNotFound), "421": errResponse(http.StatusMisdirectedRequest),
					"503": errResponse(http.StatusServiceUnavailable),
				}),
		},
		{
			Name: "searchJobsInRegion", Method: http.MethodGet, Path: internalSearchPath, Access: feature.Internal, Handler: s.searchInternal,
			Doc: op("A region's part of a global job search (node to node)",
				"Runs a region-scope search over this node's shards with the parameters and cursor of a global "+
					"search; the calling node merges the regions' parts. Needs the node-to-node secret.",
				[]any{
					queryParam("q", "As in searchJobs.", map[string]any{"type": "string", "maxLength": MaxQuery}),
					queryParam("skills", "As in searchJobs.", map[string]any{"type": "string"}),
					limitParam(), cursorParam(),
					queryParam("scope", "Always global: the cursor belongs to a global search.", map[string]any{"type": "string", "enum": []string{"global"}}),
				}, nil,
				responses(http.StatusOK, "This region's best matches.", "JobSearchPage", http.StatusBadRequest, http.StatusNotFound, http.StatusServiceUnavailable)),
		},
	}
}
