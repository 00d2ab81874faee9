package shardkey

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
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

// closureAllowed is everything outside the standard library that may be linked into a program
// because it imports shardkey: vitess/go/vt/key and what it pulls in behind it. An entry ending in
// "/" allows the packages under it, any other entry one package. A vitess upgrade that pulls in
// more fails TestDependencyClosure, so that someone decides whether every binary should carry it.
var closureAllowed = map[string]string{
	"vitess.io/vitess/go/vt/key":                       "keyrange parsing and comparison: the reason we import vitess",
	"vitess.io/vitess/go/vt/proto/topodata":            "the KeyRange type vt/key works on",
	"vitess.io/vitess/go/vt/proto/vtrpc":               "vterrors' error codes (vt/key returns vterrors)",
	"vitess.io/vitess/go/vt/proto/vttime":              "imported by topodata",
	"vitess.io/vitess/go/vt/proto/querythrottler":      "imported by topodata",
	"vitess.io/vitess/go/vt/proto/vtorcdata":           "imported by topodata",
	"vitess.io/vitess/go/vt/vterrors":                  "vt/key's errors",
	"vitess.io/vitess/go/vt/log":                       "vterrors logs through it (glog behind)",
	"vitess.io/vitess/go/vt/utils":                     "vt/log's flag helpers",
	"vitess.io/vitess/go/flagutil":                     "vt/log's flag helpers",
	"vitess.io/vitess/go/sets":                         "flagutil",
	"vitess.io/vitess/go/hack":                         "vt/key's zero-copy string conversions",
	"github.com/golang/glog":                           "vt/log (registers flags on flag.CommandLine: see cmd/flags_test.go)",
	"github.com/golang/glog/":                          "glog's internals",
	"github.com/lmittmann/tint":                        "vt/log's console handler",
	"github.com/mattn/go-isatty":                       "tint",
	"github.com/spf13/pflag":                           "vt/log and flagutil declare pflags (never parsed unless a caller asks)",
	"golang.org/x/sys/unix":                            "go-isatty",
	"golang.org/x/sys/windows":                         "go-isatty on Windows",
	"github.com/planetscale/vtprotobuf/protohelpers":   "vitess's generated fast proto code",
	"google.golang.org/protobuf/":                      "the proto runtime behind topodata",
	"google.golang.org/genproto/googleapis/rpc/status": "grpc status",
	"google.golang.org/grpc/codes":                     "vterrors maps to gRPC codes",
	"google.golang.org/grpc/status":                    "vterrors maps to gRPC status",
	"google.golang.org/grpc/internal/status":           "grpc/status",
	"google.golang.org/grpc/internal":                  "grpc/status",
	"google.golang.org/grpc/grpclog":                   "grpc/internal",
	"google.golang.org/grpc/grpclog/internal":          "grpclog",
	"google.golang.org/grpc/connectivity":              "grpc/internal",
	"google.golang.org/grpc/serviceconfig":             "grpc/internal",
}

func closureViolation(path string) bool {
	if _, ok := closureAllowed[path]; ok {
		return false
	}
	for p := range closureAllowed {
		if strings.HasSuffix(p, "/") && strings.HasPrefix(path, p) {
			return false
		}
	}
	return true
}

// TestDependencyClosure checks everything a program links because it imports shardkey, not only
// the package's own imports: `go list -deps`, standard library excluded, against closureAllowed.
func TestDependencyClosure(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const self = "github.com/8thdegree/meridian/pkg/shardkey"
	var seenKey bool
	for _, path := range strings.Fields(string(out)) {
		switch {
		case path == self:
		case path == "vitess.io/vitess/go/vt/key":
			seenKey = true
		case strings.HasPrefix(path, "github.com/8thdegree/meridian/"):
			t.Errorf("shardkey depends on %s: it must not depend on the rest of Meridian", path)
		case closureViolation(path):
			t.Errorf("shardkey depends on %s, which is not in closureAllowed (deps_test.go)", path)
		}
	}
	if !seenKey {
		t.Fatalf("go list -deps did not list vitess.io/vitess/go/vt/key; is it still the package's dependency?\n%s", out)
	}
}

func TestClosureViolation(t *testing.T) {
	for path, bad := range map[string]bool{
		"vitess.io/vitess/go/vt/key": false, "google.golang.org/protobuf/proto": false, "github.com/golang/glog/internal/logsink": false,
		"vitess.io/vitess/go/vt/topo": true, "google.golang.org/grpc": true, "google.golang.org/grpc/credentials": true,
		"github.com/jackc/pgx/v5": true, "github.com/golang/globber": true,
	} {
		if got := closureViolation(path); got != bad {
			t.Errorf("closureViolation(%q) = %v, want %v", path, got, bad)
		}
	}
}
