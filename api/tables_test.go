package api

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// tableOwners says which package under api/internal owns each table of migrations/sql: only the
// owner's statements name it. docs/schema.md ("Who owns which table") is the same map with the why.
var tableOwners = map[string]string{
	"auth.users":                  "accounts",
	"auth.credentials":            "accounts",
	"auth.oauth_identities":       "accounts",
	"auth.refresh_token_families": "accounts",
	"auth.refresh_tokens":         "accounts",
	"auth.api_keys":               "accounts",
	"auth.email_verifications":    "accounts",
	"auth.email_claims":           "accounts/directory",
	"core.profiles":               "profiles",
	"core.settings":               "profiles",
	"core.jobs":                   "jobs",
	"core.reviews":                "reviews",
	"core.audit_log":              "audit",
	"core.outbox":                 "outbox",
	"core.inbox":                  "outbox",
	"ai.embeddings":               "matching",
	"ai.match_lists":              "matching",
	"ai.match_events":             "matching",
	"ai.models":                   "matching",
	"core.proposals":              "hiring",
	"core.job_proposals":          "hiring",
	"core.contracts":              "hiring",
	"core.contract_refs":          "hiring",
	"ai.outcomes":                 "outcomes",
}

// crossReads are the statements that name another package's table today, each with its reason
// (docs/schema.md). Adding one is a decision to write down there, not a way to make this test pass.
var crossReads = map[string]string{
	// The registration transaction creates the empty rows every user starts with, so that no user
	// exists without them; profiles owns what goes in them afterwards.
	"accounts core.profiles": "starting row, written in the registration transaction",
	"accounts core.settings": "starting row, written in the registration transaction",
	// Same-shard joins with the user row, which must stay one statement (atomic insert-if-exists,
	// existence and data in one round trip). They read only id, ksid, name, role and deleted_at.
	"profiles auth.users": "public profile joins name, role and deletion",
	"reviews auth.users":  "insert-if-reviewee-exists, user exists, ratings with existence",
	// The matching engine embeds and indexes profiles and jobs: it reads their text and facts (and the
	// verified ratings, and the hiring outcomes it learns from) in the same scan as the vectors.
	"matching core.jobs":     "text to embed, facts of the index joined with the vectors",
	"matching core.profiles": "text to embed, facts of the index joined with the vectors",
	"matching auth.users":    "only freelancers with live accounts are embedded and indexed",
	"matching core.reviews":  "verified ratings, the rating signal",
	"matching ai.outcomes":   "hiring outcomes, the labels the trainer learns from",
}

var tableName = regexp.MustCompile(`\b(auth|core|ai)\.[a-z_]+\b`)

// TestFeaturesReadOnlyTheirTables greps the SQL (backquoted strings) of every non-test Go file under
// api/internal for schema-qualified table names and fails when a package names a table it does not
// own and that is not a listed cross read.
func TestFeaturesReadOnlyTheirTables(t *testing.T) {
	root := filepath.Join("internal")
	found := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, root+string(filepath.Separator))))
		if pkg == "apitest" {
			return nil // the test harness sets rows up directly, like the tests it serves
		}
		for i, part := range strings.Split(string(src), "`") {
			if i%2 == 0 {
				continue // outside a raw string
			}
			for _, name := range tableName.FindAllString(part, -1) {
				owner, known := tableOwners[name]
				if !known {
					t.Errorf("%s names %s, which has no owner in tableOwners (and docs/schema.md)", path, name)
					continue
				}
				if owner == pkg || strings.HasPrefix(pkg, owner+"/") {
					continue // a feature's subpackages are the feature
				}
				key := pkg + " " + name
				if _, ok := crossReads[key]; !ok {
					t.Errorf("%s names %s, owned by %s: read it through the owner's interface (docs/schema.md)", path, name, owner)
				}
				found[key] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var stale []string
	for key := range crossReads {
		if !found[key] {
			stale = append(stale, key)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("crossReads lists reads that no longer exist; remove them here and in docs/schema.md: %v", stale)
	}
}
