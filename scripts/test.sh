#!/usr/bin/env bash
# The test command: installs what is missing (scripts/deps.sh), then runs the lint (scripts/lint.sh:
# gofmt, go vet, golangci-lint, no tracked binaries) and every test, integration tests included.
# The test harness (deploy/local/testenv) starts private PostgreSQL, Redis and Consul servers under
# this run's own temporary folder, on private ports; on exit, whatever still runs from that folder is
# stopped and the folder removed.
#
# The lint always covers the whole tree. The exit code is go test's; when the tests pass but the lint
# found something, it is the lint's (1): a finding fails the run, and does not hide test failures.
# Extra arguments go to `go test` (for example: scripts/test.sh -run TestMove ./shardmgr/...).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
CONSUL_BIN="$(./scripts/ensure-consul.sh)"
export CONSUL_BIN

# Everything this run creates lives here: test servers' data, Go's build scratch, t.TempDir().
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/meridian-test.XXXXXX")"
# PostgreSQL runs as the postgres user when we are root: it must be able to enter the folder.
chmod 0711 "$run_dir"
export TMPDIR="$run_dir"

# pids_under prints the pids of processes whose working folder or command line is under the run
# folder: postmasters and Consul name their data folder on the command line, Redis renames
# itself but runs in its folder.
pids_under() {
  local p pid cwd
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    cwd="$(readlink "$p/cwd" 2>/dev/null || true)"
    if [[ "$cwd" == "$run_dir"* ]] || tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$run_dir"; then
      echo "$pid"
    fi
  done
}

cleanup() {
  # The testenv watchdogs (sh) are usually still here, a second after their test binary ended:
  # they would clean up by themselves, and stopping them is harmless since we do their job.
  local pids pid names=() deadline=$((SECONDS + 10))
  local -A signalled=()
  pids="$(pids_under)"
  [[ -z "$pids" ]] && { rm -rf "$run_dir"; return; }
  for pid in $pids; do names+=("$pid($(cat "/proc/$pid/comm" 2>/dev/null || echo gone))"); done
  echo "test.sh: stopping what still runs under $run_dir: ${names[*]}" >&2
  # Repeat: a test binary may start a server between our listing and its own death.
  while [[ -n "$pids" ]] && ((SECONDS < deadline)); do
    for pid in $pids; do
      [[ -n "${signalled[$pid]:-}" ]] && continue
      kill -TERM "$pid" 2>/dev/null || true
      signalled[$pid]=1
    done
    sleep 0.2
    pids="$(pids_under)"
  done
  # shellcheck disable=SC2086
  [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null
  rm -rf "$run_dir"
}
trap cleanup EXIT

# Commands run in the background and are waited for, because bash runs a trap only once the
# foreground command has finished: a SIGTERM from a CI timeout must stop the run now, and the
# EXIT trap then stops everything under the run folder (test binaries included).
child=
on_signal() {
  [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
run() {
  "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=
  return "$rc"
}

lint=0
run ./scripts/lint.sh || lint=$?

if (($# == 0)); then set -- ./...; fi
code=0
run go test -count=1 -p 2 -timeout 25m "$@" || code=$?

# The benchmarks run once each (-benchtime=1x) when no packages were named, so they cannot rot; their
# figures come from `make bench`. The vector index's live beside it (api/internal/matching/index):
# Go's internal rule keeps bench/ from importing it.
if ((code == 0)) && [[ "$*" == "./..." ]]; then
  run go test -count=1 -run '^$' -bench . -benchtime 1x ./bench/... ./api/internal/matching/index/ || code=$?
fi

if ((code == 0 && lint != 0)); then
  echo "test.sh: tests passed but the lint found problems (see above; scripts/lint.sh runs it alone)" >&2
  code=$lint
fi
exit "$code"
