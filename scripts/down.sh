#!/usr/bin/env bash
# Stops everything scripts/up.sh started. Data stays in .local-cluster/ for the next start; remove that
# folder after stopping to begin from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./cmd/meridian-local down "$@"
