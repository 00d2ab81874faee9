package migrate_test

import (
	"testing"

	"github.com/8thdegree/meridian/deploy/local/testenv"
)

// TestMain lets testenv start the process's private PostgreSQL and stop it when the tests end.
func TestMain(m *testing.M) { testenv.Main(m) }

// newShardDB returns the DSN of a fresh database standing in for one physical shard. It skips the
// test under -short.
func newShardDB(t testing.TB) string {
	t.Helper()
	return testenv.Postgres(t).NewDatabase(t)
}
