#!/usr/bin/env bash
# Builds golangci-lint from the Go module proxy and caches it outside the repository, the way
# ensure-consul.sh caches Consul: a fresh machine needs only Go. Prints the binary's path on stdout.
#
# The version is pinned so that every machine finds the same things; the binary is built with the Go
# that builds Meridian, so it understands the language version go.mod asks for.
set -euo pipefail

GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"
CACHE_DIR="${MERIDIAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meridian}"
DIR="$CACHE_DIR/golangci-lint-$GOLANGCI_LINT_VERSION"
BIN="$DIR/golangci-lint"

if [[ -n "${GOLANGCI_LINT_BIN:-}" && -x "${GOLANGCI_LINT_BIN}" ]]; then
  echo "$GOLANGCI_LINT_BIN"; exit 0
fi
if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
  echo "$BIN"; exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/golangci-lint-build.lock"
flock 9
if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
  echo "$BIN"; exit 0
fi

echo "building golangci-lint $GOLANGCI_LINT_VERSION from the Go module proxy (a few minutes, once)..." >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Outside any module: `go install pkg@version` uses golangci-lint's own go.mod and go.sum.
cd "$work"
GOWORK=off GOFLAGS=-mod=mod GOBIN="$work" \
  go install -trimpath -ldflags "-s -w" \
  "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION" >&2
mkdir -p "$DIR"
mv "$work/golangci-lint" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
"$BIN" version >&2
echo "$BIN"
