package reviews

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/8thdegree/meridian/api/internal/richtext"
	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Limits of core.reviews (docs/schema.md).
const (
	MinRating  = 1
	MaxRating  = 5
	MaxComment = 5000
)

// createRequest is the body of POST /reviews/. IDs are strings so that a malformed one is a field
// error, not a decoding failure.
type createRequest struct {
	JobID      string `json:"job_id"`
	RevieweeID string `json:"reviewee_id"`
	Rating     *int   `json:"rating"`
	Comment    string `json:"comment"`
}

type createInput struct {
	jobID      shardkey.ID
	revieweeID shardkey.ID
	rating     int
	comment    string
}

func (c *createRequest) normalize(san *richtext.Sanitizer) (createInput, map[string]string) {
	bad := map[string]string{}
	var in createInput
	var err error
	if in.jobID, err = parseIDField(c.JobID, shardkey.KindJob); err != nil {
		bad["job_id"] = err.Error()
	}
	if in.revieweeID, err = parseIDField(c.RevieweeID, shardkey.KindUser); err != nil {
		bad["reviewee_id"] = err.Error()
	}
	if c.Rating == nil {
		bad["rating"] = "is required"
	} else if problem := checkRating(*c.Rating); problem != "" {
		bad["rating"] = problem
	} else {
		in.rating = *c.Rating
	}
	in.comment, err = sanitizeComment(c.Comment, san)
	if err != nil {
		bad["comment"] = err.Error()
	}
	return in, bad
}

// patchRequest is the body of PATCH /reviews/{id}. A null or absent field is left as it is.
type patchRequest struct {
	Rating  *int    `json:"rating"`
	Comment *string `json:"comment"`
}

type patchInput struct {
	rating  *int
	comment *string
}

func (p patchInput) empty() bool { return p.rating == nil && p.comment == nil }

func (p *patchRequest) normalize(san *richtext.Sanitizer) (patchInput, map[string]string) {
	bad := map[string]string{}
	var in patchInput
	if p.Rating != nil {
		if problem := checkRating(*p.Rating); problem != "" {
			bad["rating"] = problem
		} else {
			v := *p.Rating
			in.rating = &v
		}
	}
	if p.Comment != nil {
		c, err := sanitizeComment(*p.Comment, san)
		if err != nil {
			bad["comment"] = err.Error()
		} else {
			in.comment = &c
		}
	}
	return in, bad
}

func checkRating(r int) string {
	if r < MinRating || r > MaxRating {
		return fmt.Sprintf("must be an integer from %d to %d", MinRating, MaxRating)
	}
	return ""
}

// sanitizeComment makes a comment safe HTML. Both the text as sent and the sanitised text must fit:
// the first so that a client can check the limit itself, the second because it is what is stored.
func sanitizeComment(s string, san *richtext.Sanitizer) (string, error) {
	if utf8.RuneCountInString(s) > MaxComment {
		return "", fmt.Errorf("must be at most %d characters", MaxComment)
	}
	// PostgreSQL text cannot hold NUL, and it means nothing in HTML.
	out := san.Sanitize(strings.ReplaceAll(s, "\x00", ""))
	if utf8.RuneCountInString(out) > MaxComment {
		return "", fmt.Errorf("must be at most %d characters once its markup is made safe", MaxComment)
	}
	return out, nil
}

// parseIDField parses a required ID of one kind, with a message fit for a field error.
func parseIDField(s string, kind shardkey.Kind) (shardkey.ID, error) {
	if s == "" {
		return shardkey.ID{}, fmt.Errorf("is required")
	}
	id, err := shardkey.ParseIDOfKind(s, kind)
	if err != nil {
		return shardkey.ID{}, fmt.Errorf("must be a %s ID (%s_…)", kind, kind.Prefix())
	}
	return id, nil
}
