package apierror

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{NotFound("route"), 404, "not_found", ""},
		{RegionUnavailable("eu-west", 1500*time.Millisecond), 503, "region_unavailable", "2"},
		{RateLimited(10 * time.Millisecond), 429, "rate_limited", "1"},
		{BadGateway().WithCause(errors.New("boom")), 502, "bad_gateway", ""},
		{GatewayTimeout().WithCause(context.DeadlineExceeded), 504, "gateway_timeout", ""},
		{context.DeadlineExceeded, 504, "timeout", ""},
		{errors.New("secret detail"), 500, "internal", ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		e := Write(rec, c.err, "rid")
		var body struct {
			Error struct{ Code, Message, RequestID string } `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %s", c.err, rec.Body)
		}
		if rec.Code != c.status || e.Status != c.status || body.Error.Code != c.code || rec.Header().Get("Retry-After") != c.retryAfter {
			t.Errorf("%v: %d %s Retry-After %q", c.err, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
		}
		if body.Error.Message == "secret detail" || body.Error.Message == "" {
			t.Errorf("%v: message %q", c.err, body.Error.Message)
		}
		if rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("content type %q", rec.Header().Get("Content-Type"))
		}
	}
	rec := httptest.NewRecorder()
	if e := Write(rec, context.Canceled, "rid"); e.Status != StatusClientClosedRequest {
		t.Errorf("a cancelled request wrote %d %q", e.Status, rec.Body)
	}
}
