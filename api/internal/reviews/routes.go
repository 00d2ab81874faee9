package reviews

import (
	"net/http"

	"github.com/8thdegree/meridian/api/internal/openapi"

	"github.com/8thdegree/meridian/api/internal/feature"
)

// Routes returns the endpoints of the service. /reviews/stats comes before /reviews/{id} so that the
// router does not read "stats" as a review ID.
func (s *Service) Routes() []feature.Route {
	idParam := openapi.PathParam("id", "The review's ID (rev_…).")
	userID := queryParam("user_id", "The reviewee's user ID (usr_…).", true)
	writeErrors := []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusMisdirectedRequest, http.StatusServiceUnavailable}
	return []feature.Route{
		{
			Name: "createReview", Method: http.MethodPost, Path: "/reviews/",
			Access: feature.Authenticated, Scope: ScopeWrite, Handler: s.create,
			Doc: op("Review the other party of a completed contract",
				"Needs a verified email (403 email_unverified). The caller must be the client or the freelancer of the "+
					"contract (403 not_a_party otherwise) and the contract must be completed (409 contract_not_completed); "+
					"the reviewee is the other party. One review per party per contract (409 already_reviewed). "+
					"Answered by the caller's home region (another region's node answers 421 naming it); the review is "+
					"stored in the reviewee's region, which checks the contract again from its side, and is verified: it "+
					"counts in the reviewee's stats. The comment is rich text and is sanitised.",
				nil, openapi.JSONBody("ReviewInput"),
				responses(http.StatusCreated, "The review; Location names it.", "Review", append(writeErrors, http.StatusConflict)...)),
		},
		{
			Name: "listReviews", Method: http.MethodGet, Path: "/reviews/",
			Access: feature.Public, Scope: ScopeRead, Handler: s.list,
			Doc: op("Reviews a user received",
				"Every review the user received, verified (of a completed contract) or unverified (written before "+
					"reviews needed a contract; shown but not counted in stats), each with its status. Newest first, "+
					"with cursor pagination.",
				[]any{userID, queryParam("limit", "Page size, 1 to 100 (default 20).", false), queryParam("cursor", "next_cursor of the previous page.", false)},
				nil,
				responses(http.StatusOK, "One page of reviews.", "ReviewPage", http.StatusBadRequest, http.StatusNotFound, http.StatusMisdirectedRequest)),
		},
		{
			Name: "getReviewStats", Method: http.MethodGet, Path: "/reviews/stats",
			Access: feature.Public, Scope: ScopeRead, Handler: s.getStats,
			Doc: op("Rating statistics of a user",
				"Over the user's verified reviews only (those of completed contracts): count, average (two places; 0 "+
					"without reviews) and the number of reviews per rating.",
				[]any{userID}, nil,
				responses(http.StatusOK, "The stats.", "ReviewStats", http.StatusBadRequest, http.StatusNotFound, http.StatusMisdirectedRequest)),
		},
		{
			Name: "getReview", Method: http.MethodGet, Path: "/reviews/{id}",
			Access: feature.Public, Scope: ScopeRead, Handler: s.get,
			Doc: op("A review", "Anyone may read a review. A malformed or unknown ID is a 404.",
				[]any{idParam}, nil,
				responses(http.StatusOK, "The review.", "Review", http.StatusNotFound, http.StatusMisdirectedRequest)),
		},
		{
			Name: "updateReview", Method: http.MethodPatch, Path: "/reviews/{id}",
			Access: feature.Authenticated, Scope: ScopeWrite, Handler: s.patch,
			Doc: op("Change a review", "Only its author may; anyone else gets 404. Absent or null fields stay as they are.",
				[]any{idParam}, openapi.JSONBody("ReviewPatch"),
				responses(http.StatusOK, "The review after the change.", "Review", append(writeErrors, http.StatusNotFound)...)),
		},
		{
			Name: "deleteReview", Method: http.MethodDelete, Path: "/reviews/{id}",
			Access: feature.Authenticated, Scope: ScopeWrite, Handler: s.delete,
			Doc: op("Delete a review", "Only its author may; anyone else gets 404.",
				[]any{idParam}, nil,
				noContent(http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMisdirectedRequest, http.StatusServiceUnavailable)),
		},
		{
			Name: "internalCreateReview", Method: http.MethodPost, Path: internalCreatePath,
			Access: feature.Internal, Handler: s.createInternal,
			Doc: op("Write a review posted in another region (node to node)",
				"The reviewer's region has checked its side of the contract; this node, the reviewee's, checks the "+
					"reviewee's side (completed, the reviewer the other party) and writes the review. The body is "+
					"{contract_id, reviewer_id, reviewee_id, rating, comment}. Needs the node-to-node secret.",
				nil, nil,
				responses(http.StatusCreated, "The review.", "Review", http.StatusBadRequest, http.StatusForbidden, http.StatusConflict,
					http.StatusMisdirectedRequest, http.StatusServiceUnavailable)),
		},
	}
}
