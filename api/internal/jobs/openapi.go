package jobs

import (
	"net/http"
	"strconv"

	"github.com/8thdegree/meridian/api/internal/openapi"
	"github.com/8thdegree/meridian/api/internal/skills"
)

// OpenAPI helpers: every route's Doc is an OpenAPI 3.1 Operation object. Error responses refer to
// #/components/schemas/Error, which the document's assembler provides.

func op(summary, description string, params []any, requestBody map[string]any, responses map[string]any) map[string]any {
	o := map[string]any{"summary": summary, "description": description, "tags": []string{"jobs"}, "responses": responses}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if requestBody != nil {
		o["requestBody"] = requestBody
	}
	return o
}

func jsonContent(schema map[string]any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

func queryParam(name, description string, schema map[string]any) map[string]any {
	return map[string]any{"name": name, "in": "query", "required": false, "description": description, "schema": schema}
}

func limitParam() map[string]any {
	return queryParam("limit", "Page size, 1 to 100.", map[string]any{"type": "integer", "minimum": 1, "maximum": 100, "default": 20})
}

func cursorParam() map[string]any {
	return queryParam("cursor", "The next_cursor of the previous page, with the same other parameters.", map[string]any{"type": "string"})
}

func errResponse(status int) map[string]any {
	return map[string]any{"description": http.StatusText(status), "content": jsonContent(openapi.Ref("Error"))}
}

// responses is the success response plus the listed error statuses.
func responses(status int, description, schema string, errs ...int) map[string]any {
	out := map[string]any{strconv.Itoa(status): map[string]any{"description": description, "content": jsonContent(openapi.Ref(schema))}}
	for _, e := range errs {
		out[strconv.Itoa(e)] = errResponse(e)
	}
	return out
}

func withHeader(resps map[string]any, status, header, description string) map[string]any {
	r := resps[status].(map[string]any)
	r["headers"] = map[string]any{header: map[string]any{"description": description, "schema": map[string]any{"type": "string"}}}
	return resps
}

// Schemas returns the OpenAPI 3.1 component schemas the routes reference.
func Schemas() map[string]any {
	money := func(desc string) map[string]any {
		return map[string]any{"type": []string{"number", "null"}, "minimum": 0, "maximum": 9999999999.99, "multipleOf": 0.01,
			"description": desc}
	}
	fields := func(patch bool) map[string]any {
		p := map[string]any{
			"title":       map[string]any{"type": "string", "minLength": 1, "maxLength": MaxTitle, "description": "Plain text."},
			"description": map[string]any{"type": "string", "maxLength": MaxDescription, "description": "Rich text (sanitised HTML); the limit applies after sanitising."},
			"skills":      skills.Schema(),
			"budget_min":  money("Lower bound; null for none."),
			"budget_max":  money("Upper bound; null for none."),
			"currency":    map[string]any{"type": "string", "pattern": "^[A-Za-z]{3}$", "description": "ISO 4217 code, stored upper case; default USD."},
			"remote":      map[string]any{"type": "boolean", "description": "Default true."},
			"country": map[string]any{"type": []string{"string", "null"}, "pattern": "^[A-Za-z]{2}$",
				"description": "Where an on-site job is done: ISO 3166-1 alpha-2, stored upper case; null when unknown. Matching keeps an on-site job's list to freelancers of that country."},
		}
		if patch {
			p["status"] = map[string]any{"type": "string", "enum": []string{StatusOpen, StatusClosed, StatusCompleted}}
		}
		return p
	}
	job := fields(true)
	job["status"] = map[string]any{"type": "string", "enum": []string{StatusOpen, StatusInProgress, StatusCompleted, StatusClosed},
		"description": "open takes proposals; in_progress came with the job's first contract; completed when its owner closed it after that; closed without one."}
	job["id"] = map[string]any{"type": "string", "pattern": "^job_[0-9a-z]{32}$"}
	job["owner_id"] = map[string]any{"type": "string", "pattern": "^usr_[0-9a-z]{32}$"}
	job["created_at"] = map[string]any{"type": "string", "format": "date-time"}
	job["updated_at"] = map[string]any{"type": "string", "format": "date-time"}
	jobRequired := []string{"id", "owner_id", "title", "description", "skills", "budget_min", "budget_max", "currency",
		"remote", "country", "status", "created_at", "updated_at"}

	searchItem := map[string]any{"allOf": []any{openapi.Ref("Job"), map[string]any{
		"type": "object", "required": []string{"rank"},
		"properties": map[string]any{"rank": map[string]any{"type": "number", "minimum": 0,
			"description": "Relevance (ts_rank, or the number of wanted skills listed); comparable within one search only."}},
	}}}
	return map[string]any{
		"Job": map[string]any{"type": "object", "properties": job, "required": jobRequired},
		"JobCreate": map[string]any{"type": "object", "properties": fields(false), "required": []string{"title"},
			"additionalProperties": false},
		"JobUpdate": map[string]any{"type": "object", "properties": fields(true), "additionalProperties": false,
			"description": "Any subset of the fields; null only for budget_min, budget_max and country."},
		"JobPage": map[string]any{"type": "object", "required": []string{"items"},
			"properties": map[string]any{
				"items":       map[string]any{"type": "array", "items": openapi.Ref("Job")},
				"next_cursor": map[string]any{"type": "string", "description": "Absent on the last page."},
			}},
		"JobSearchItem": searchItem,
		"JobSearchPage": map[string]any{"type": "object", "required": []string{"items", "partial", "failed_shards"},
			"properties": map[string]any{
				"items":         map[string]any{"type": "array", "items": openapi.Ref("JobSearchItem")},
				"next_cursor":   map[string]any{"type": "string", "description": "Absent on the last page."},
				"partial":       map[string]any{"type": "boolean", "description": "Some shard or region did not answer."},
				"failed_shards": map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "description": `Shard names, or "<region>/*".`},
			}},
	}
}
