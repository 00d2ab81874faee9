package hiring

import (
	"net/http"
	"strconv"

	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/openapi"
)

// Routes returns the hiring endpoints. /proposals/{id}/accept is routed by its caller (the job's
// owner, whose shard holds the reference row); /proposals/{id} by the proposal (its author's region,
// where the cover letter is); /contracts/{id}/... by the contract (its client's region).
func (s *Service) Routes() []feature.Route {
	jobID := openapi.PathParam("id", "The job's ID (job_…). A malformed ID is a 404.")
	proposalID := openapi.PathParam("id", "The proposal's ID (prp_…). A malformed ID is a 404.")
	contractID := openapi.PathParam("id", "The contract's ID (ctr_…). A malformed ID is a 404.")
	limit := map[string]any{"name": "limit", "in": "query", "description": "Page size, 1 to 100 (default 20).",
		"schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}
	cursor := map[string]any{"name": "cursor", "in": "query", "description": "The next_cursor of the previous page.",
		"schema": map[string]any{"type": "string"}}
	both := []authn.Role{authn.Client, authn.Freelancer}
	return []feature.Route{
		{
			Name: "createProposal", Method: http.MethodPost, Path: "/jobs/{id}/proposals", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Freelancer}, Scope: ScopeWrite, Handler: s.apply,
			Doc: openapi.Operation("hiring", "Apply to a job",
				"Freelancers with a verified email (403 email_unverified), on an open job (409 job_not_open otherwise). "+
					"The proposal is stored on the author's shard with status pending; the job's owner gets a reference "+
					"row (no text) on their shard through the outbox, within moments, or when their region is back. "+
					"rate is the proposed amount (positive, two decimals at most); currency defaults to the job's and "+
					"must be it. The cover letter is rich text (sanitised, at most "+strconv.Itoa(MaxCoverLetter)+
					" characters). One live (pending or accepted) proposal per freelancer and job: 409 proposal_exists. "+
					"score is the author's fit to the job (skills covered, verified rating), used by sort=best.",
				[]any{jobID}, openapi.JSONBody("ProposalCreate"),
				withLocation(openapi.Responses(http.StatusCreated, "The new proposal.", "Proposal", 400, 401, 403, 404, 409, 413, 415, 421, 503))),
		},
		{
			Name: "listJobProposals", Method: http.MethodGet, Path: "/jobs/{id}/proposals", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Client}, Scope: ScopeRead, Handler: s.listJobProposals,
			Doc: openapi.Operation("hiring", "List a job's proposals",
				"The job's owner only (anyone else gets 404): the reference rows on the owner's shard, newest first "+
					"(sort=newest, the default) or best first (sort=best: highest score, then newest). Items carry no "+
					"cover letter: GET /proposals/{id} reads it in the author's region.",
				[]any{jobID, map[string]any{"name": "sort", "in": "query", "description": "newest (default) or best.",
					"schema": map[string]any{"type": "string", "enum": []string{"newest", "best"}, "default": "newest"}}, limit, cursor},
				nil, openapi.Responses(http.StatusOK, "One page of proposals.", "ProposalRefPage", 400, 401, 403, 404, 503)),
		},
		{
			Name: "listOwnProposals", Method: http.MethodGet, Path: "/proposals/", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Freelancer}, Scope: ScopeRead, Handler: s.listOwnProposals,
			Doc: openapi.Operation("hiring", "List the caller's proposals",
				"The caller's own proposals, every status, newest first.",
				[]any{limit, cursor}, nil, openapi.Responses(http.StatusOK, "One page of proposals.", "ProposalPage", 400, 401, 403, 503)),
		},
		{
			Name: "getProposal", Method: http.MethodGet, Path: "/proposals/{id}", Access: feature.Authenticated,
			Scope: ScopeRead, Handler: s.getProposal,
			Doc: openapi.Operation("hiring", "Read a proposal",
				"Its author or the job's owner, with the cover letter, read in the author's region (the router sends "+
					"the request there); anyone else gets 404.",
				[]any{proposalID}, nil, openapi.Responses(http.StatusOK, "The proposal.", "Proposal", 401, 403, 404, 421, 503)),
		},
		{
			Name: "withdrawProposal", Method: http.MethodDelete, Path: "/proposals/{id}", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Freelancer}, Scope: ScopeWrite, Handler: s.withdraw,
			Doc: openapi.Operation("hiring", "Withdraw a proposal",
				"Its author, while it is pending (409 proposal_not_pending otherwise): status withdrawn, and the job "+
					"owner's reference row follows. A withdrawal that crosses the owner's acceptance in flight cancels "+
					"the contract that acceptance started.",
				[]any{proposalID}, nil, openapi.Responses(http.StatusOK, "The withdrawn proposal.", "Proposal", 401, 403, 404, 409, 421, 503)),
		},
		{
			Name: "acceptProposal", Method: http.MethodPost, Path: "/proposals/{id}/accept", Access: feature.Authenticated,
			Roles: []authn.Role{authn.Client}, Scope: ScopeWrite, Handler: s.accept,
			Doc: openapi.Operation("hiring", "Accept a proposal",
				"The job's owner, on a pending proposal (409 proposal_not_pending) of a job that is open or in progress "+
					"(409 job_not_open): starts a contract at the proposal's rate, stored on the owner's shard; the job "+
					"becomes in_progress and the proposal accepted. The freelancer's reference row and proposal follow "+
					"through the outbox, so this succeeds while the freelancer's region is down. A proposal to someone "+
					"else's job is a 404.",
				[]any{proposalID}, nil,
				withLocation(openapi.Responses(http.StatusCreated, "The new contract.", "Contract", 401, 403, 404, 409, 421, 503))),
		},
		{
			Name: "listContracts", Method: http.MethodGet, Path: "/contracts/", Access: feature.Authenticated,
			Roles: both, Scope: ScopeRead, Handler: s.listContracts,
			Doc: openapi.Operation("hiring", "List the caller's contracts",
				"As client and as freelancer, from the caller's home shard, newest first; status= filters.",
				[]any{map[string]any{"name": "status", "in": "query", "description": "active, completed or cancelled.",
					"schema": map[string]any{"type": "string", "enum": []string{ContractActive, ContractCompleted, ContractCancelled}}},
					limit, cursor},
				nil, openapi.Responses(http.StatusOK, "One page of contracts.", "ContractPage", 400, 401, 403, 503)),
		},
		{
			Name: "getContract", Method: http.MethodGet, Path: "/contracts/{id}", Access: feature.Authenticated,
			Roles: both, Scope: ScopeRead, Handler: s.getContract,
			Doc: openapi.Operation("hiring", "Read a contract",
				"Either party, from the client's shard (the router sends the request to the client's region); anyone "+
					"else gets 404.",
				[]any{contractID}, nil, openapi.Responses(http.StatusOK, "The contract.", "Contract", 401, 403, 404, 421, 503)),
		},
		{
			Name: "completeContract", Method: http.MethodPost, Path: "/contracts/{id}/complete", Access: feature.Authenticated,
			Roles: both, Scope: ScopeWrite, Handler: s.complete,
			Doc: openapi.Operation("hiring", "Complete a contract",
				"The client (403 for the freelancer), while it is active (409 contract_not_active): status completed, "+
					"completed_at set. Both parties may then review each other.",
				[]any{contractID}, nil, openapi.Responses(http.StatusOK, "The completed contract.", "Contract", 401, 403, 404, 409, 421, 503)),
		},
		{
			Name: "cancelContract", Method: http.MethodPost, Path: "/contracts/{id}/cancel", Access: feature.Authenticated,
			Roles: both, Scope: ScopeWrite, Handler: s.cancel,
			Doc: openapi.Operation("hiring", "Cancel a contract",
				"Either party, while it is active (409 contract_not_active): status cancelled, cancelled_at and "+
					"cancelled_by set.",
				[]any{contractID}, nil, openapi.Responses(http.StatusOK, "The cancelled contract.", "Contract", 401, 403, 404, 409, 421, 503)),
		},
	}
}

func withLocation(r map[string]any) map[string]any {
	for code, v := range r {
		if len(code) == 3 && code[0] == '2' {
			v.(map[string]any)["headers"] = map[string]any{"Location": map[string]any{"description": "The new resource's URL.",
				"schema": map[string]any{"type": "string"}}}
		}
	}
	return r
}

// Schemas returns the OpenAPI component schemas of the routes.
func Schemas() map[string]any {
	id := func(prefix string) map[string]any {
		return map[string]any{"type": "string", "pattern": "^" + prefix + "_[0-9a-z]{32}$"}
	}
	ts := map[string]any{"type": "string", "format": "date-time"}
	nullTS := map[string]any{"type": []string{"string", "null"}, "format": "date-time"}
	money := map[string]any{"type": "number", "exclusiveMinimum": 0, "maximum": 9999999999.99, "multipleOf": 0.01}
	currency := map[string]any{"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217."}
	scoreSchema := map[string]any{"type": "number", "minimum": 0, "maximum": 1,
		"description": "The author's fit to the job when the proposal was made: 0.8 × the share of the job's skills the author's profile lists + 0.2 × the author's verified rating (Bayesian, prior 3 stars worth 5 reviews) scaled to 0..1."}
	proposalStatus := map[string]any{"type": "string", "enum": []string{ProposalPending, ProposalWithdrawn, ProposalAccepted, ProposalClosed}}
	refProps := func() map[string]any {
		return map[string]any{"id": id("prp"), "job_id": id("job"), "freelancer_id": id("usr"), "client_id": id("usr"),
			"status": proposalStatus, "rate": money, "currency": currency, "score": scoreSchema, "created_at": ts, "updated_at": ts}
	}
	refRequired := []string{"id", "job_id", "freelancer_id", "client_id", "status", "rate", "currency", "score", "created_at", "updated_at"}
	full := refProps()
	full["cover_letter"] = map[string]any{"type": "string", "maxLength": MaxCoverLetter, "description": "Rich text (sanitised HTML)."}
	page := func(item string) map[string]any {
		return map[string]any{"type": "object", "required": []string{"items"}, "properties": map[string]any{
			"items": map[string]any{"type": "array", "items": openapi.Ref(item)}, "next_cursor": map[string]any{"type": "string", "description": "Absent on the last page."}}}
	}
	return map[string]any{
		"ProposalCreate": map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"cover_letter", "rate"},
			"properties": map[string]any{
				"cover_letter": map[string]any{"type": "string", "minLength": 1, "maxLength": MaxCoverLetter, "description": "Rich text; sanitised."},
				"rate":         money,
				"currency":     map[string]any{"type": "string", "pattern": "^[A-Za-z]{3}$", "description": "The job's currency (the default)."},
			},
		},
		"Proposal":        map[string]any{"type": "object", "properties": full, "required": append(refRequired, "cover_letter")},
		"ProposalRef":     map[string]any{"type": "object", "properties": refProps(), "required": refRequired, "description": "A proposal as the job owner's shard holds it: no cover letter."},
		"ProposalPage":    page("Proposal"),
		"ProposalRefPage": page("ProposalRef"),
		"Contract": map[string]any{"type": "object",
			"properties": map[string]any{"id": id("ctr"), "job_id": id("job"), "proposal_id": id("prp"), "client_id": id("usr"),
				"freelancer_id": id("usr"), "rate": money, "currency": currency,
				"status":     map[string]any{"type": "string", "enum": []string{ContractActive, ContractCompleted, ContractCancelled}},
				"started_at": ts, "completed_at": nullTS, "cancelled_at": nullTS,
				"cancelled_by": map[string]any{"type": []string{"string", "null"}, "pattern": "^usr_[0-9a-z]{32}$"}, "updated_at": ts},
			"required": []string{"id", "job_id", "proposal_id", "client_id", "freelancer_id", "rate", "currency", "status", "started_at",
				"completed_at", "cancelled_at", "cancelled_by", "updated_at"}},
		"ContractPage": page("Contract"),
	}
}
