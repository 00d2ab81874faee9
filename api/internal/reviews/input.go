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

// createRequest is the body of POST /reviews/. The ID is a string so that a malformed one is a field
// error, not a decoding failure. The reviewee is not named: it is the other party of the contract.
type createRequest struct {
	ContractID string `json:"contract_id"`
	Rating     *int   `json:"rating"`
	Comment    string `json:"comment"`
}

type createInput struct {
	contractID shardkey.ID
	rating     int
	comment    string
}

func (c *createRequest) normalize(san *richtext.Sanitizer) (createInput, map[string]string) {
	bad := map[string]string{}
	var in createInput
	var err error
	if in.contractID, err = parseIDField(c.ContractID, shardkey.KindContract); err != nil {
		bad["contract_id"] = err.Error()
	}
	in.rating, in.comment = checkRatingAndComment(c.Rating, c.Comment, san, bad)
	return in, bad
}

// checkRatingAndComment validates a required rating and a comment into bad, returning them as stored.
func checkRatingAndComment(rating *int, comment string, san *richtext.Sanitizer, bad map[string]string) (int, string) {
	r := 0
	if rating == nil {
		bad["rating"] = "is required"
	} else if problem := checkRating(*rating); problem != "" {
		bad["rating"] = problem
	} else {
		r = *rating
	}
	c, err := sanitizeComment(comment, san)
	if err != nil {
		bad["comment"] = err.Error()
	}
	return r, c
}

// internalCreateRequest is the body of the node-to-node route on which the reviewee's region writes a
// review that the reviewer's region accepted: the reviewer's region has checked its side of the
// contract, the reviewee's region checks its own.
type internalCreateRequest struct {
	ContractID string `json:"contract_id"`
	ReviewerID string `json:"reviewer_id"`
	RevieweeID string `json:"reviewee_id"`
	Rating     *int   `json:"rating"`
	Comment    string `json:"comment"`
}

type internalCreateInput struct {
	contractID, reviewerID, revieweeID shardkey.ID
	rating                             int
	comment                            string
}

func (c *internalCreateRequest) normalize(san *richtext.Sanitizer) (internalCreateInput, map[string]string) {
	bad := map[string]string{}
	var in internalCreateInput
	var err error
	if in.contractID, err = parseIDField(c.ContractID, shardkey.KindContract); err != nil {
		bad["contract_id"] = err.Error()
	}
	if in.reviewerID, err = parseIDField(c.ReviewerID, shardkey.KindUser); err != nil {
		bad["reviewer_id"] = err.Error()
	}
	if in.revieweeID, err = parseIDField(c.RevieweeID, shardkey.KindUser); err != nil {
		bad["reviewee_id"] = err.Error()
	}
	in.rating, in.comment = checkRatingAndComment(c.Rating, c.Comment, san, bad)
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
