package profiles

import (
	"net/http"
	"strconv"

	"github.com/8thdegree/meridian/api/internal/openapi"
	"github.com/8thdegree/meridian/api/internal/skills"
)

// Schemas returns the OpenAPI 3.1 component schemas the routes reference. Error responses refer to
// #/components/schemas/Error, which the document's assembler provides.
func Schemas() map[string]any {
	profileProps := func() map[string]any {
		return map[string]any{
			"headline": map[string]any{"type": "string", "maxLength": MaxHeadline},
			"bio":      map[string]any{"type": "string", "maxLength": MaxBio, "description": "Rich text (sanitised HTML)."},
			"skills":   skills.Schema(),
			"hourly_rate": map[string]any{"type": []string{"number", "null"}, "minimum": 0, "maximum": 99999999.99,
				"multipleOf": 0.01, "description": "Decimal with at most two places."},
			"country":   map[string]any{"type": []string{"string", "null"}, "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2."},
			"available": map[string]any{"type": "boolean"},
		}
	}
	profileRequired := []string{"headline", "bio", "skills", "hourly_rate", "country", "available"}

	own := profileProps()
	own["attributes"] = map[string]any{"type": "object", "maxProperties": MaxAttributes,
		"propertyNames":        map[string]any{"pattern": "^[a-z][a-z0-9_]{0,31}$"},
		"additionalProperties": map[string]any{"type": "string", "minLength": 1, "maxLength": MaxAttributeValue},
		"description": "Attributes the freelancer declares about themselves (e.g. gender), used only to report the fairness of " +
			"matching; the owner sees them, nobody else. Not country or region, which the profile has already."}

	public := profileProps()
	public["id"] = map[string]any{"type": "string", "pattern": "^usr_[0-9a-z]{32}$"}
	public["name"] = map[string]any{"type": "string"}
	public["role"] = map[string]any{"type": "string", "enum": []string{"client", "freelancer", "admin", "sre", "compliance"}}
	public["rating"] = openapi.Ref("Rating")

	notifProps := map[string]any{}
	for _, k := range NotificationKinds() {
		notifProps[k] = map[string]any{"type": "boolean"}
	}
	notifPatchProps := map[string]any{}
	for _, k := range NotificationKinds() {
		notifPatchProps[k] = map[string]any{"type": []string{"boolean", "null"}}
	}

	return map[string]any{
		"Profile": map[string]any{
			"type": "object", "properties": own, "required": profileRequired,
		},
		"ProfileInput": map[string]any{
			"type": "object", "properties": own, "additionalProperties": false,
			"description": "PUT replaces the profile: absent fields take their empty value.",
		},
		"PublicProfile": map[string]any{
			"type": "object", "properties": public,
			"required": append([]string{"id", "name", "role", "rating"}, profileRequired...),
		},
		"Rating": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"count":   map[string]any{"type": "integer", "minimum": 0},
				"average": map[string]any{"type": "number", "minimum": 0, "maximum": 5, "description": "Rounded to two places; 0 without reviews."},
			},
			"required": []string{"count", "average"},
		},
		"Settings": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"locale":   map[string]any{"type": "string", "maxLength": maxLocale, "description": "BCP 47 language tag."},
				"timezone": map[string]any{"type": "string", "maxLength": maxTimezone, "description": "IANA time zone name."},
				"notifications": map[string]any{"type": "object", "properties": notifProps,
					"required": NotificationKinds(), "additionalProperties": false},
			},
			"required": []string{"locale", "timezone", "notifications"},
		},
		"SettingsPatch": map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"locale":   map[string]any{"type": []string{"string", "null"}, "maxLength": maxLocale},
				"timezone": map[string]any{"type": []string{"string", "null"}, "maxLength": maxTimezone},
				"notifications": map[string]any{"type": "object", "properties": notifPatchProps,
					"additionalProperties": false},
			},
		},
	}
}

func op(summary, description string, params []any, reqBody map[string]any, resp map[string]any) map[string]any {
	o := map[string]any{"summary": summary, "description": description, "tags": []string{"users"}, "responses": resp}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if reqBody != nil {
		o["requestBody"] = reqBody
	}
	return o
}

// errorText describes each error status the routes answer with.
func errorText(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "Invalid request: malformed JSON, an unknown field, or fields that break a rule (see error.fields)."
	case http.StatusUnauthorized:
		return "Missing or invalid credentials."
	case http.StatusForbidden:
		return "The API key lacks the scope."
	case http.StatusNotFound:
		return "No such user."
	case http.StatusMisdirectedRequest:
		return "The data is homed in another region; replay in the region named by X-Meridian-Replay-Region."
	case http.StatusRequestEntityTooLarge:
		return "The body is larger than 1 MiB."
	case http.StatusUnsupportedMediaType:
		return "The body is not JSON."
	case http.StatusServiceUnavailable:
		return "The data is being moved or the node has no topology; retry after Retry-After."
	}
	return http.StatusText(code)
}

func responses(ok int, okDesc, okSchema string, errs ...int) map[string]any {
	r := map[string]any{
		strconv.Itoa(ok): map[string]any{"description": okDesc,
			"content": map[string]any{"application/json": map[string]any{"schema": openapi.Ref(okSchema)}}},
	}
	for _, code := range errs {
		r[strconv.Itoa(code)] = map[string]any{"description": errorText(code),
			"content": map[string]any{"application/json": map[string]any{"schema": openapi.Ref("Error")}}}
	}
	return r
}
