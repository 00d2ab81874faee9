package accounts

import (
	"github.com/8thdegree/meridian/api/internal/accounts/directory"
	"github.com/8thdegree/meridian/api/internal/accounts/oauth"
	"github.com/8thdegree/meridian/api/internal/openapi"
)

// Schemas returns the OpenAPI component schemas the accounts routes reference, except Error, which
// the document's assembler provides (#/components/schemas/Error).
func Schemas() map[string]any {
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	id := func(prefix string) map[string]any {
		return map[string]any{"type": "string", "pattern": "^" + prefix + "_[0-9a-hjkmnp-tv-z]{32}$"}
	}
	ts := map[string]any{"type": "string", "format": "date-time"}
	role := map[string]any{"type": "string", "enum": []string{"client", "freelancer", "admin", "sre", "compliance"}}
	scope := map[string]any{"type": "string", "enum": Scopes()}
	obj := func(required []string, props map[string]any) map[string]any {
		o := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
		if len(required) > 0 {
			o["required"] = required
		}
		return o
	}
	return map[string]any{
		"User": obj([]string{"id", "email", "email_verified", "name", "role", "region", "created_at"}, map[string]any{
			"id": id("usr"), "email": map[string]any{"type": "string", "format": "email"},
			"email_verified": map[string]any{"type": "boolean", "description": "the user proved the email (verification link, or a provider that verified it); " +
				"until then the account cannot create API keys, post jobs or reviews, apply, or link a sign-in provider (403 email_unverified)"},
			"name": str("display name"), "role": role, "region": str("home region"), "created_at": ts,
		}),
		"TokenBundle": obj([]string{"user", "access_token", "refresh_token", "token_type", "expires_in"}, map[string]any{
			"user":          openapi.Ref("User"),
			"access_token":  str("EdDSA JWT (typ at+jwt); send as Authorization: Bearer"),
			"refresh_token": map[string]any{"type": "string", "pattern": "^mrt_tfm_[0-9a-z]{32}\\.[A-Za-z0-9_-]{43}$", "description": "opaque; single use"},
			"token_type":    map[string]any{"type": "string", "const": "Bearer"},
			"expires_in":    map[string]any{"type": "integer", "description": "access token lifetime in seconds"},
		}),
		"RegisterRequest": obj([]string{"email", "password", "name", "role"}, map[string]any{
			"email":    map[string]any{"type": "string", "format": "email", "maxLength": directory.MaxEmail},
			"password": map[string]any{"type": "string", "minLength": minPassword, "maxLength": maxPassword},
			"name":     map[string]any{"type": "string", "minLength": 1, "maxLength": maxName},
			"role":     map[string]any{"type": "string", "enum": []string{"client", "freelancer"}},
			"region":   str("home region (default: the region that took the request)"),
		}),
		"LoginRequest": obj([]string{"email", "password"}, map[string]any{
			"email": map[string]any{"type": "string", "maxLength": directory.MaxEmail}, "password": map[string]any{"type": "string", "maxLength": maxPassword},
		}),
		"VerifyEmailRequest": obj([]string{"token"}, map[string]any{
			"token": map[string]any{"type": "string", "pattern": "^mev_usr_[0-9a-z]{32}\\.[A-Za-z0-9_-]{43}$", "description": "the token of the verification mail's link"},
		}),
		"OAuthLinkRequest": obj([]string{"link_token"}, map[string]any{
			"link_token": str("error.details.link_token of the callback's 409 account_exists"),
			"password":   map[string]any{"type": "string", "maxLength": maxPassword, "description": "the account's password; required when the account has one"},
		}),
		"RefreshRequest": obj([]string{"refresh_token"}, map[string]any{"refresh_token": str("a refresh token")}),
		"APIKeyCreateRequest": obj([]string{"name", "scopes"}, map[string]any{
			"name":       map[string]any{"type": "string", "minLength": 1, "maxLength": maxKeyName},
			"scopes":     map[string]any{"type": "array", "items": scope, "minItems": 1, "uniqueItems": true},
			"expires_at": map[string]any{"type": "string", "format": "date-time", "description": "when the key stops working (after now, at most a year ahead); absent: it does not expire"},
			"password":   map[string]any{"type": "string", "maxLength": maxPassword, "description": "the account's password, needed when the session's login is more than 10 minutes old"},
		}),
		"APIKey": obj([]string{"id", "name", "scopes", "prefix", "created_at"}, map[string]any{
			"id": id("key"), "name": str("label"), "scopes": map[string]any{"type": "array", "items": scope},
			"prefix": str("first characters of the key's secret part"), "created_at": ts, "last_used_at": ts, "expires_at": ts,
		}),
		"APIKeyCreated": obj([]string{"id", "key", "name", "scopes", "prefix", "created_at"}, map[string]any{
			"id": id("key"), "key": str("mk_<id>_<secret>; shown once"), "name": str("label"),
			"scopes": map[string]any{"type": "array", "items": scope}, "prefix": str("first characters of the key's secret part"), "created_at": ts, "expires_at": ts,
		}),
		"APIKeyPage": obj([]string{"items"}, map[string]any{
			"items": map[string]any{"type": "array", "items": openapi.Ref("APIKey")}, "next_cursor": str("opaque; absent on the last page"),
		}),
		"JWKS": obj([]string{"keys"}, map[string]any{"keys": map[string]any{"type": "array", "items": map[string]any{
			"type": "object", "properties": map[string]any{"kty": str("OKP"), "crv": str("Ed25519"), "x": str("public key, base64url"), "kid": str("key ID"), "use": str("sig"), "alg": str("EdDSA")},
		}}}),
		"EmailClaimRequest": obj([]string{"email_hash", "user_id", "home_region"}, map[string]any{
			"email_hash": map[string]any{"type": "string", "pattern": "^[0-9a-f]{64}$"}, "user_id": id("usr"), "home_region": str("region name"),
		}),
		"EmailClaim": obj([]string{"user_id", "home_region", "created_at"}, map[string]any{
			"user_id": id("usr"), "home_region": str("region name"), "created_at": ts,
		}),
		"InternalLoginRequest": obj([]string{"user_id", "email", "password"}, map[string]any{
			"user_id": id("usr"), "email": str("normalised email"), "password": str("as the client sent it"),
			"ip": str("client address"), "user_agent": str("client user agent"),
		}),
		"InternalOAuthRequest": obj([]string{"user_id", "provider", "subject", "email"}, map[string]any{
			"user_id": id("usr"), "provider": map[string]any{"type": "string", "enum": []string{oauth.ProviderGoogle, oauth.ProviderGitHub}},
			"subject": str("provider's subject"), "email": str("verified email"), "ip": str("client address"), "user_agent": str("client user agent"),
			"id_token":     str("google: the provider's ID token, which the home region verifies (issuer, audience, signature, expiry, email_verified, subject and email)"),
			"access_token": str("github: the provider's access token, which the home region spends on GitHub's /user and /user/emails to confirm the subject and email"),
		}),
	}
}

// OpenAPI helpers.

func op(summary, description string, params []any, reqBody map[string]any, responses ...map[string]any) map[string]any {
	o := map[string]any{"summary": summary, "description": description, "tags": []string{"auth"}}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if reqBody != nil {
		o["requestBody"] = reqBody
	}
	o["responses"] = merge(responses...)
	return o
}

func internalOp(summary string, reqBody map[string]any, ok, errors map[string]any, params ...any) map[string]any {
	o := op(summary, "Node-to-node only (internal secret); not reachable through the edge router.", params, reqBody, ok, errors)
	o["tags"] = []string{"internal"}
	o["x-internal"] = true
	return o
}

func resp(status, description, schema string) map[string]any {
	r := map[string]any{"description": description}
	if schema != "" {
		r["content"] = map[string]any{"application/json": map[string]any{"schema": openapi.Ref(schema)}}
	} else {
		r["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
	}
	return map[string]any{status: r}
}

func noContent(description string) map[string]any {
	return map[string]any{"204": map[string]any{"description": description}}
}

var errorText = map[string]string{
	"400": "Invalid request (field errors in error.fields).",
	"401": "Missing or invalid credentials (`invalid_credentials` for a wrong email or password).",
	"403": "Not allowed for this caller, role or API-key scope, or `email_unverified`: the account has not verified its email.",
	"404": "Not found.",
	"409": "Conflict (`email_taken`, `too_many_api_keys`, `account_exists`, `identity_taken`, `email_already_verified`, `not_linked`).",
	"413": "Body over 1 MiB.",
	"415": "Body is not JSON.",
	"421": "The data is homed in another region (`X-Meridian-Replay-Region`); the router replays the request there.",
	"429": "Too many failed attempts; see Retry-After.",
	"502": "The OAuth provider failed.",
	"503": "A region this request needs is unavailable; see Retry-After.",
}

func errs(statuses ...string) map[string]any {
	out := map[string]any{}
	for _, s := range statuses {
		out[s] = map[string]any{"description": errorText[s], "content": map[string]any{"application/json": map[string]any{"schema": openapi.Ref("Error")}}}
	}
	return out
}

func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func queryParam(name, description, typ string) map[string]any {
	return map[string]any{"name": name, "in": "query", "required": false, "description": description, "schema": map[string]any{"type": typ}}
}
