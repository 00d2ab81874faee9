package authn

import (
	"net/http"

	"github.com/8thdegree/meridian/internal/apierror"
)

// Capability is an action that needs more than being signed in: it acts on others or in the caller's
// name outside the session (API keys, jobs and reviews others read, applications, linked sign-ins).
// Each feature asks Principal.Can before it does one; docs/security.md lists them.
type Capability string

const (
	// CapCreateAPIKey: POST /auth/api-keys.
	CapCreateAPIKey Capability = "create_api_key"
	// CapPostJob: POST /jobs.
	CapPostJob Capability = "post_job"
	// CapPostReview: POST /reviews.
	CapPostReview Capability = "post_review"
	// CapApply: POST /jobs/{id}/proposals.
	CapApply Capability = "apply"
	// CapLinkIdentity: POST /auth/oauth/{provider}/link.
	CapLinkIdentity Capability = "link_identity"
)

// ErrEmailUnverified is the answer to a capability an unverified account does not have.
var ErrEmailUnverified = &apierror.Error{Status: http.StatusForbidden, Code: "email_unverified",
	Message: "verify your email address first: follow the link we mailed you (POST /api/v1/auth/verify-email/resend sends a new one), then refresh your session"}

// Can returns nil if the principal may do c, else ErrEmailUnverified. Every capability needs a
// verified email today; the rule lives here so that a later one (a role, a scope) is added once.
func (p Principal) Can(c Capability) error {
	switch c {
	case CapCreateAPIKey, CapPostJob, CapPostReview, CapApply, CapLinkIdentity:
		if !p.EmailVerified {
			return ErrEmailUnverified
		}
		return nil
	}
	// An unknown capability is a programming error: refuse rather than allow.
	return apierror.Forbidden("unknown capability " + string(c))
}
