#!/usr/bin/env bash
# Installs what Meridian's tests and local cluster run, when it is missing:
#   - PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) and redis-server, through apt when
#     we are root on Debian/Ubuntu; otherwise it says what to install and fails;
#   - the Consul agent, built once from the Go module proxy by scripts/ensure-consul.sh.
# Go itself is assumed. Idempotent, and silent when everything is already there; every action it
# takes is reported on stderr. It never starts or configures a server: the tests and
# `meridian-local up` start their own, on private ports.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "deps: $*" >&2; }

# has_postgres mirrors local.PostgresBinDir: pg_config's bindir, the Debian location of 15, PATH.
has_postgres() {
  local dir
  if dir="$(pg_config --bindir 2>/dev/null)" && [[ -x "$dir/initdb" ]]; then return 0; fi
  [[ -x /usr/lib/postgresql/15/bin/initdb ]] && return 0
  command -v initdb >/dev/null 2>&1
}

if ! command -v go >/dev/null 2>&1; then
  say "go is not installed (Go 1.26 or newer is required): https://go.dev/dl/"
  exit 1
fi

missing=()
has_postgres || missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if ((${#missing[@]} > 0)); then
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${missing[*]}"
    say "install them, for example: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    say "(or run this script as root on Debian/Ubuntu and it installs them)"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  say "installing ${missing[*]} with apt-get"
  apt-get update -qq >&2
  # A Debian release whose PostgreSQL is not 15 has no postgresql-15 package without the PGDG
  # repository; the code finds any version's binaries, so take the release's own then.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && ! apt-cache show postgresql-15 >/dev/null 2>&1; then
    say "no postgresql-15 package here; installing the release's postgresql instead (Meridian targets 15)"
    missing=("${missing[@]/postgresql-15/postgresql}")
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  has_postgres || { say "PostgreSQL server binaries still not found after installing"; exit 1; }
  command -v redis-server >/dev/null 2>&1 || { say "redis-server still not found after installing"; exit 1; }
  say "installed ${missing[*]}"
fi

# Fast when cached; otherwise builds (minutes, once) and says so itself.
consul="$(./scripts/ensure-consul.sh)"
[[ -x "$consul" ]] || { say "ensure-consul.sh did not produce a binary"; exit 1; }
