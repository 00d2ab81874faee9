package apipath

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const job = "job_065wzsb800g370x3nmh42kr104106105"
	cases := []struct {
		path     string
		ok       bool
		template string
		endpoint Endpoint
		id       string
	}{
		{"/api/v1/users/me", true, "/users/me", Other, ""},
		{"/api/users/me", true, "/users/me", Other, ""},
		{"/api/v1/jobs", true, "/jobs", Other, ""},
		{"/api/v1/jobs/", true, "/jobs", Other, ""},
		{"/api/v1/jobs/search", true, "/jobs/search", Search, ""},
		{"/api/v1/jobs/matching", true, "/jobs/matching", Other, ""},
		{"/api/v1/jobs/" + job, true, "/jobs/{id}", Other, job},
		{"/api/jobs/" + job + "/", true, "/jobs/{id}", Other, job},
		{"/api/v1/reviews/stats", true, "/reviews/stats", Other, ""},
		{"/api/v1/reviews/rev_x", true, "/reviews/{id}", Other, "rev_x"},
		{"/api/v1/users/usr_x/profile", true, "/users/{id}/profile", Other, "usr_x"},
		{"/api/v1/jobs/" + job + "/proposals", true, "/jobs/{id}/proposals", Other, ""},
		{"/api/v1/proposals/", true, "/proposals", Other, ""},
		{"/api/v1/proposals/prp_x", true, "/proposals/{id}", Other, "prp_x"},
		{"/api/v1/proposals/prp_x/accept", true, "/proposals/{id}/accept", Other, ""},
		{"/api/v1/contracts", true, "/contracts", Other, ""},
		{"/api/v1/contracts/ctr_x", true, "/contracts/{id}", Other, "ctr_x"},
		{"/api/v1/contracts/ctr_x/complete", true, "/contracts/{id}/complete", Other, "ctr_x"},
		{"/api/v1/contracts/ctr_x/cancel", true, "/contracts/{id}/cancel", Other, "ctr_x"},
		{"/api/v1/contracts/ctr_x/other", true, OtherTemplate, Other, ""},
		{"/api/v1/matching/events", true, "/matching/events", Other, ""},
		{"/api/v1/admin/fairness", true, "/admin/fairness", Other, ""},
		{"/api/v1/admin/matching/models", true, "/admin/matching/models", Other, ""},
		{"/api/v1/users/profile", true, "/users/profile", Other, ""},
		{"/api/v1/auth/register", true, "/auth/register", Register, ""},
		{"/api/v1/auth/login", true, "/auth/login", Login, ""},
		{"/api/v1/auth/refresh", true, "/auth/refresh", Refresh, ""},
		{"/api/v1/auth/logout", true, "/auth/logout", Logout, ""},
		{"/api/v1/auth/oauth/google", true, "/auth/oauth/{provider}", OAuth, ""},
		{"/api/v1/auth/oauth/github/callback", true, "/auth/oauth/{provider}/callback", OAuth, ""},
		{"/api/v1/auth/oauth/github/link", true, "/auth/oauth/{provider}/link", Other, ""},
		{"/api/v1/auth/verify-email", true, "/auth/verify-email", Other, ""},
		{"/api/v1/auth/verify-email/resend", true, "/auth/verify-email/resend", Other, ""},
		{"/api/v1/auth/api-keys", true, "/auth/api-keys", Other, ""},
		{"/api/v1/auth/api-keys/key_x", true, "/auth/api-keys/{id}", Other, "key_x"},
		{"/api/v1/auth/jwks.json", true, "/auth/jwks.json", Other, ""},
		{"/api/v1/openapi.json", true, "/openapi.json", Other, ""},
		{"/api/v1", true, OtherTemplate, Other, ""},
		{"/api/v1/nothing", true, OtherTemplate, Other, ""},
		{"/api/v1/a/b/c/d/e/f/g/h", true, OtherTemplate, Other, ""},
		{"/api/v2/users/me", true, OtherTemplate, Other, ""},
		{"/", false, "", Other, ""},
		{"/metrics", false, "", Other, ""},
		{"/healthz", false, "", Other, ""},
		{"/apiv1/users/me", false, "", Other, ""},
		{"/api/../metrics", false, "", Other, ""},
		{"/api/v1/../../metrics", false, "", Other, ""},
		{"/api/v1/users/./me", false, "", Other, ""},
		{"/api/v1//users/me", false, "", Other, ""},
		{"/api/v1/jobs/..", false, "", Other, ""},
		{"", false, "", Other, ""},
		{"/api/v1/internal", false, "", Other, ""},
		{"/api/v1/internal/", false, "", Other, ""},
		{"/api/v1/internal/login", false, "", Other, ""},
		{"/api/v1/internal/email-claims/abc", false, "", Other, ""},
		{"/api/internal/oauth-login", false, "", Other, ""},
		{"/api/v1/internals", true, OtherTemplate, Other, ""},
	}
	for _, c := range cases {
		got, ok := Parse(c.path)
		if ok != c.ok || got.Template != c.template || got.Endpoint != c.endpoint || got.ID != c.id {
			t.Errorf("Parse(%q) = %+v, %v; want {%s %d %s}, %v", c.path, got, ok, c.template, c.endpoint, c.id, c.ok)
		}
	}
}

func TestTokenOptional(t *testing.T) {
	for e, want := range map[Endpoint]bool{Other: false, Register: true, Login: true, Refresh: true, Logout: true, OAuth: true, Search: false} {
		if e.TokenOptional() != want {
			t.Errorf("%d.TokenOptional() = %v", e, !want)
		}
	}
}

func TestQueryIDAndScope(t *testing.T) {
	cases := []struct{ q, id, scope string }{
		{"", "", ""},
		{"owner_id=usr_a", "usr_a", ""},
		{"limit=5&user_id=usr_b&scope=region", "usr_b", "region"},
		{"job_id=job_c", "job_c", ""},
		{"reviewee_id=usr_d", "", ""},
		{"owner_id=&user_id=usr_e", "usr_e", ""},
		{"q=go&scope=global", "", "global"},
		{"xowner_id=usr_f", "", ""},
	}
	for _, c := range cases {
		if got := QueryID(c.q); got != c.id {
			t.Errorf("QueryID(%q) = %q, want %q", c.q, got, c.id)
		}
		if got := Scope(c.q); got != c.scope {
			t.Errorf("Scope(%q) = %q, want %q", c.q, got, c.scope)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	path := "/api/v1/jobs/job_065wzsb800g370x3nmh42kr104106105"
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(path); _ = QueryID("a=1&owner_id=x") }); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/api/v1/users/me", "/api/jobs/x/", "/api/v1//", "/api/../x", "/api/v1/auth/oauth/a/callback", "/x"} {
		f.Add(s)
	}
	templates := Templates()
	f.Fuzz(func(t *testing.T, path string) {
		info, ok := Parse(path)
		if !ok {
			return
		}
		if !strings.HasPrefix(path, "/api") {
			t.Fatalf("Parse(%q) accepted a path outside /api", path)
		}
		if strings.Contains(path, "/../") || strings.Contains(path[len("/api"):], "//") || strings.HasSuffix(path, "/..") {
			t.Fatalf("Parse(%q) accepted a path that is not canonical", path)
		}
		if !slices.Contains(templates, info.Template) {
			t.Fatalf("Parse(%q) returned the unknown template %q", path, info.Template)
		}
		if info.ID != "" && !strings.Contains(path, "/"+info.ID) {
			t.Fatalf("Parse(%q) returned an ID %q that is not a segment", path, info.ID)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse("/api/v1/users/usr_065wzsb800g370x3nmh42kr104106105/profile")
	}
}
