package migrations_test

import (
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/migrations"
)

var fileName = regexp.MustCompile(`^(\d{5})_[a-z0-9_]+\.sql$`)

// TestFilesLayout checks the conventions goose cannot: names, dense versions, and a Down section
// that actually does something, so every migration can be rolled back.
func TestFilesLayout(t *testing.T) {
	entries, err := fs.ReadDir(migrations.Files(), ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			t.Errorf("%s: name must match %s", e.Name(), fileName)
			continue
		}
		if v, _ := strconv.Atoi(m[1]); v != i+1 {
			t.Errorf("%s: version %d, want %d (versions are dense and start at 1)", e.Name(), v, i+1)
		}
		b, err := fs.ReadFile(migrations.Files(), e.Name())
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		up := strings.Index(text, "-- +goose Up\n")
		down := strings.Index(text, "-- +goose Down\n")
		if up < 0 || down < 0 || down < up {
			t.Errorf("%s: needs a '-- +goose Up' section followed by a '-- +goose Down' section", e.Name())
			continue
		}
		if !hasStatement(text[down:]) {
			t.Errorf("%s: the Down section is empty", e.Name())
		}
		if !hasStatement(text[up:down]) {
			t.Errorf("%s: the Up section is empty", e.Name())
		}
	}
}

func hasStatement(section string) bool {
	for _, line := range strings.Split(section, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "--") {
			return true
		}
	}
	return false
}
