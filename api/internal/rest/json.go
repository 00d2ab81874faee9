package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/8thdegree/meridian/internal/apierror"
)

// MaxBodyBytes is the contract's body limit: larger bodies get 413.
const MaxBodyBytes = 1 << 20

// Validator is implemented by request bodies that check their own fields after decoding. It returns
// field (JSON name) → problem, empty when valid.
type Validator interface {
	Validate() map[string]string
}

// WriteJSON writes v as the response body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"internal error"}}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Decode reads a JSON request body into v strictly: the content type must be JSON (415), the body at most
// MaxBodyBytes (413), no unknown fields, no trailing data, and the types must match (400 naming the
// field). If v is a Validator its problems come back as a 400 with fields.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return apierror.UnsupportedMediaType()
		}
	} else if r.ContentLength != 0 {
		return apierror.UnsupportedMediaType()
	}
	if r.ContentLength > MaxBodyBytes {
		return apierror.TooLarge(MaxBodyBytes)
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	return DecodeBytes(body, v)
}

// DecodeBytes is Decode without the HTTP checks, for fuzzing and for bodies already read.
func DecodeBytes(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apierror.TooLarge(mbe.Limit)
		}
		return apierror.BadRequest("the request body must hold one JSON value")
	}
	if val, ok := v.(Validator); ok {
		if fields := val.Validate(); len(fields) > 0 {
			return apierror.Invalid(fields)
		}
	}
	return nil
}

func decodeError(err error) error {
	var (
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		mbe  *http.MaxBytesError
		errF = strings.TrimPrefix(err.Error(), "json: ")
	)
	switch {
	case errors.As(err, &mbe):
		return apierror.TooLarge(mbe.Limit)
	case errors.Is(err, io.EOF):
		return apierror.BadRequest("the request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apierror.BadRequest("the request body is truncated JSON")
	case errors.As(err, &syn):
		return apierror.BadRequest(fmt.Sprintf("malformed JSON at byte %d", syn.Offset))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return apierror.BadRequest(fmt.Sprintf("the request body must be a JSON %s", jsonKind(typ.Type.Kind().String())))
		}
		return apierror.Invalid(map[string]string{field: "must be " + jsonKind(typ.Type.Kind().String())})
	case strings.HasPrefix(errF, "unknown field "):
		name := strings.Trim(strings.TrimPrefix(errF, "unknown field "), `"`)
		return apierror.Invalid(map[string]string{name: "unknown field"})
	}
	var e *apierror.Error
	if errors.As(err, &e) {
		return e
	}
	// A field's own UnmarshalJSON/UnmarshalText failed (a malformed ID, say).
	return apierror.BadRequest("invalid request body: " + errF)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	}
	return "of another type"
}
