#!/usr/bin/env bash
# The "run it" command: installs what is missing (scripts/deps.sh), then starts a whole three-region
# Meridian on this machine (cmd/meridian-local up) and prints how to use it. Safe to run again: running
# servers are reused and data is kept. Extra arguments go to `meridian-local up`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
CONSUL_BIN="$(./scripts/ensure-consul.sh)"
export CONSUL_BIN
exec go run ./cmd/meridian-local up "$@"
