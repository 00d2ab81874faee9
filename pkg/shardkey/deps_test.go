package shardkey

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// allowedNonStd are the only non-standard-library imports: Vitess's keyrange
// helpers and the proto type they work on. Note that vitess/go/vt/key pulls in
// vterrors, vt/log and glog, whose init registers glog's flags (-v, -vmodule,
// -log_dir, ...) on flag.CommandLine and starts a flush goroutine in every
// binary that imports it. topodata alone pulls in only protobuf.
var allowedNonStd = map[string]bool{
	"vitess.io/vitess/go/vt/key":            true,
	"vitess.io/vitess/go/vt/proto/topodata": true,
}

// forbiddenStd are standard packages that would make the package do I/O, log,
// read flags or escape the type system. crypto/rand (the default entropy
// source) is the one deliberate source of outside input.
var forbiddenStd = []string{
	"os", "net", "log", "flag", "syscall", "unsafe", "plugin", "database", "embed",
	"io/fs", "io/ioutil", "path/filepath", "runtime/cgo", "testing", "reflect",
}

// TestImports enforces what the package may import by parsing the imports of
// its non-test files, like Tailscale's depaware check: no external tool, and
// a new import fails here before it reaches review.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if reason := importViolation(path); reason != "" {
				t.Errorf("%s imports %q: %s", name, path, reason)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d files; is the test running in the package directory?", checked)
	}
}

func importViolation(path string) string {
	if allowedNonStd[path] {
		return ""
	}
	first, _, _ := strings.Cut(path, "/")
	if strings.Contains(first, ".") {
		return "not on the allow list (standard library, vitess key and topodata only)"
	}
	if path == "C" {
		return "cgo is not allowed"
	}
	for _, bad := range forbiddenStd {
		if path == bad || strings.HasPrefix(path, bad+"/") {
			return "shardkey is a pure library: no I/O, logging, flags or unsafe code"
		}
	}
	return ""
}

func TestImportViolation(t *testing.T) {
	for path, ok := range map[string]bool{
		"fmt": true, "crypto/sha256": true, "encoding/binary": true, "vitess.io/vitess/go/vt/key": true,
		"os": false, "os/exec": false, "net/http": false, "log/slog": false, "flag": false, "unsafe": false,
		"github.com/jackc/pgx/v5": false, "vitess.io/vitess/go/vt/log": false, "C": false,
	} {
		if got := importViolation(path) == ""; got != ok {
			t.Errorf("importViolation(%q) allowed = %v, want %v", path, got, ok)
		}
	}
}
