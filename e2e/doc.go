// Package e2e holds the end-to-end tests: real API nodes (one or more per region, as cmd/api runs
// them) behind a real edge router in every region, over real shards, Redis and Consul, driven the
// way a client drives Meridian. Its harness, e2e/cluster, is the one place where the api and router
// packages are linked together; the tests of either side use their own harness
// (api/internal/apitest, router/routertest), so neither side's tests build the other.
//
// The tests start servers: `./scripts/test.sh ./e2e/...` runs them, and `go test -short` skips them.
package e2e
