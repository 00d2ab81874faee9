package profiles

import (
	"net/http"

	"github.com/8thdegree/meridian/api/internal/openapi"

	"github.com/8thdegree/meridian/api/internal/feature"
)

// Routes returns the endpoints of the service.
func (s *Service) Routes() []feature.Route {
	return []feature.Route{
		{
			Name: "getOwnProfile", Method: http.MethodGet, Path: "/users/profile",
			Access: feature.Authenticated, Scope: ScopeRead, Handler: s.getOwnProfile,
			Doc: op("The caller's profile",
				"A user without a stored profile gets the empty profile.",
				nil, nil,
				responses(http.StatusOK, "The profile.", "Profile", http.StatusUnauthorized, http.StatusForbidden, http.StatusMisdirectedRequest)),
		},
		{
			Name: "putOwnProfile", Method: http.MethodPut, Path: "/users/profile",
			Access: feature.Authenticated, Scope: ScopeWrite, Handler: s.putOwnProfile,
			Doc: op("Replace the caller's profile",
				"Absent fields take their empty value. The bio is rich text and is sanitised; skills are "+
					"trimmed, lower-cased and deduplicated, and may not contain a comma; the country is upper-cased.",
				nil, openapi.JSONBody("ProfileInput"),
				responses(http.StatusOK, "The stored profile.", "Profile", http.StatusBadRequest, http.StatusUnauthorized,
					http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
					http.StatusMisdirectedRequest, http.StatusServiceUnavailable)),
		},
		{
			Name: "getPublicProfile", Method: http.MethodGet, Path: "/users/{id}/profile",
			Access: feature.Public, Handler: s.getPublicProfile,
			Doc: op("A user's public profile",
				"Anyone may read it; it holds no email and no settings. A malformed or unknown ID is a 404. "+
					"A user homed in another region is answered with 421 and the region to replay in.",
				[]any{openapi.PathParam("id", "The user's ID (usr_…).")}, nil,
				responses(http.StatusOK, "The public profile with the user's rating.", "PublicProfile", http.StatusNotFound, http.StatusMisdirectedRequest)),
		},
		{
			Name: "getSettings", Method: http.MethodGet, Path: "/users/settings",
			Access: feature.Authenticated, Scope: ScopeRead, Handler: s.getSettings,
			Doc: op("The caller's private settings",
				"Notifications list every known kind, with defaults for those never set.",
				nil, nil,
				responses(http.StatusOK, "The settings.", "Settings", http.StatusUnauthorized, http.StatusForbidden, http.StatusMisdirectedRequest)),
		},
		{
			Name: "patchSettings", Method: http.MethodPatch, Path: "/users/settings",
			Access: feature.Authenticated, Scope: ScopeWrite, Handler: s.patchSettings,
			Doc: op("Change the caller's settings",
				"Given fields replace the stored ones; notifications merge key by key; null leaves a value as it is.",
				nil, openapi.JSONBody("SettingsPatch"),
				responses(http.StatusOK, "The settings after the change.", "Settings", http.StatusBadRequest, http.StatusUnauthorized,
					http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
					http.StatusMisdirectedRequest, http.StatusServiceUnavailable)),
		},
	}
}
