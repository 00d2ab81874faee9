package reviews

import (
	"net/http"
	"strconv"

	"github.com/8thdegree/meridian/api/internal/openapi"
)

// Schemas returns the OpenAPI 3.1 component schemas the routes reference. Error responses refer to
// #/components/schemas/Error, which the document's assembler provides.
func Schemas() map[string]any {
	id := func(prefix string) map[string]any {
		return map[string]any{"type": "string", "pattern": "^" + prefix + "_[0-9a-z]{32}$"}
	}
	rating := map[string]any{"type": "integer", "minimum": MinRating, "maximum": MaxRating}
	comment := map[string]any{"type": "string", "maxLength": MaxComment, "description": "Rich text (sanitised HTML)."}
	dist := map[string]any{}
	for i := MinRating; i <= MaxRating; i++ {
		dist[strconv.Itoa(i)] = map[string]any{"type": "integer", "minimum": 0}
	}
	return map[string]any{
		"Review": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"id": id("rev"),
				"contract_id": map[string]any{"type": []string{"string", "null"}, "pattern": "^ctr_[0-9a-z]{32}$",
					"description": "The completed contract the review is about; null for an unverified review."},
				"status": map[string]any{"type": "string", "enum": []string{StatusVerified, StatusUnverified},
					"description": "verified: bound to a completed contract, counted in stats; unverified: written before reviews needed a contract, listed but not counted."},
				"job_id": id("job"), "reviewer_id": id("usr"), "reviewee_id": id("usr"),
				"rating": rating, "comment": comment,
				"created_at": map[string]any{"type": "string", "format": "date-time"},
				"updated_at": map[string]any{"type": "string", "format": "date-time"},
			},
			"required": []string{"id", "contract_id", "status", "job_id", "reviewer_id", "reviewee_id", "rating", "comment", "created_at", "updated_at"},
		},
		"ReviewInput": map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"contract_id": map[string]any{"type": "string", "pattern": "^ctr_[0-9a-z]{32}$",
					"description": "A completed contract of which the caller is the client or the freelancer; the reviewee is the other party."},
				"rating": rating, "comment": comment},
			"required": []string{"contract_id", "rating"},
		},
		"ReviewPatch": map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"rating":  map[string]any{"type": []string{"integer", "null"}, "minimum": MinRating, "maximum": MaxRating},
				"comment": map[string]any{"type": []string{"string", "null"}, "maxLength": MaxComment},
			},
		},
		"ReviewPage": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"items":       map[string]any{"type": "array", "items": openapi.Ref("Review")},
				"next_cursor": map[string]any{"type": "string", "description": "Absent on the last page."},
			},
			"required": []string{"items"},
		},
		"ReviewStats": map[string]any{
			"type": "object", "description": "Over verified reviews only.",
			"properties": map[string]any{
				"user_id": id("usr"),
				"count":   map[string]any{"type": "integer", "minimum": 0},
				"average": map[string]any{"type": "number", "minimum": 0, "maximum": MaxRating},
				"distribution": map[string]any{"type": "object", "properties": dist, "additionalProperties": false,
					"required": []string{"1", "2", "3", "4", "5"}},
			},
			"required": []string{"user_id", "count", "average", "distribution"},
		},
	}
}

func op(summary, description string, params []any, reqBody map[string]any, resp map[string]any) map[string]any {
	o := map[string]any{"summary": summary, "description": description, "tags": []string{"reviews"}, "responses": resp}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if reqBody != nil {
		o["requestBody"] = reqBody
	}
	return o
}

func queryParam(name, description string, required bool) map[string]any {
	return map[string]any{"name": name, "in": "query", "required": required, "description": description,
		"schema": map[string]any{"type": "string"}}
}

func errorText(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "Invalid request: malformed JSON, an unknown field, or fields that break a rule (see error.fields)."
	case http.StatusUnauthorized:
		return "Missing or invalid credentials."
	case http.StatusForbidden:
		return "The API key lacks the scope; for a new review, also email_unverified, or not_a_party (the caller is not a party of the contract)."
	case http.StatusNotFound:
		return "No such review or user (another user's review, for changes)."
	case http.StatusConflict:
		return "contract_not_completed: the contract is not completed yet; already_reviewed: the caller already reviewed this contract; reviewee_deleted: the other party deleted their account."
	case http.StatusMisdirectedRequest:
		return "The data is homed in another region; replay in the region named by X-Meridian-Replay-Region."
	case http.StatusRequestEntityTooLarge:
		return "The body is larger than 1 MiB."
	case http.StatusUnsupportedMediaType:
		return "The body is not JSON."
	case http.StatusServiceUnavailable:
		return "The data is being moved, or the reviewee's region cannot be reached (region_unavailable); retry after Retry-After."
	}
	return http.StatusText(code)
}

func errorResponses(r map[string]any, errs []int) map[string]any {
	for _, code := range errs {
		r[strconv.Itoa(code)] = map[string]any{"description": errorText(code),
			"content": map[string]any{"application/json": map[string]any{"schema": openapi.Ref("Error")}}}
	}
	return r
}

func responses(ok int, okDesc, okSchema string, errs ...int) map[string]any {
	return errorResponses(map[string]any{
		strconv.Itoa(ok): map[string]any{"description": okDesc,
			"content": map[string]any{"application/json": map[string]any{"schema": openapi.Ref(okSchema)}}},
	}, errs)
}

func noContent(errs ...int) map[string]any {
	return errorResponses(map[string]any{"204": map[string]any{"description": "Deleted."}}, errs)
}
