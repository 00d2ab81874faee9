#!/usr/bin/env bash
# Builds the Consul agent that Meridian's local cluster and tests run, from the Go module proxy, and
# caches it outside the repository. Prints the binary's path on stdout.
#
# Consul's go.mod replaces its own submodules (api, sdk, proto-public, troubleshoot, envoyextensions)
# with local folders that the module zip does not contain, so we copy the module, drop that replace
# block and take the submodules at the versions the release requires. A few of Consul's dependencies
# are missing from the checksum database: checksum checks are relaxed for this one build only.
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-v1.16.1}"
CACHE_DIR="${MERIDIAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meridian}"
BIN="$CACHE_DIR/consul-$CONSUL_VERSION/consul"

if [[ -n "${CONSUL_BIN:-}" && -x "${CONSUL_BIN}" ]]; then
  echo "$CONSUL_BIN"; exit 0
fi
if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
  echo "$BIN"; exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/consul-build.lock"
flock 9
if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
  echo "$BIN"; exit 0
fi

echo "building consul $CONSUL_VERSION from the Go module proxy (a few minutes, once)..." >&2
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOSUMDB=off GOWORK=off
src="$(cd "$work" && go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || { echo "ensure-consul: could not download github.com/hashicorp/consul@$CONSUL_VERSION" >&2; exit 1; }
cp -r "$src" "$work/consul"
chmod -R u+w "$work/consul"
cd "$work/consul"
# Drop the block that points the submodules at folders the module zip lacks.
awk 'BEGIN{skip=0} /^replace \($/{skip=1; next} skip && /^\)$/{skip=0; next} !skip' go.mod > go.mod.new
mv go.mod.new go.mod
mkdir -p "$(dirname "$BIN")"
go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" . >&2
mv "$BIN.tmp" "$BIN"
"$BIN" version >&2
echo "$BIN"
