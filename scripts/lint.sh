#!/usr/bin/env bash
# The lint: `make lint` runs it, and so does the test command (scripts/test.sh, hence the CI).
# Every check runs even when an earlier one found something, so one run lists every finding; the
# exit code is 1 when any check found something.
#
#   1. gofmt on every tracked and new Go file, testdata excepted (it may hold malformed Go on purpose);
#   2. go vet ./...;
#   3. golangci-lint with the linters .golangci.yml lists (built once by ensure-golangci-lint.sh);
#   4. no tracked file is a compiled program: nothing starts with an ELF or Mach-O header, and every
#      tracked file with the executable bit is a script (starts with #!).
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() { echo "lint: $*" >&2; failed=1; }

# 1. gofmt
mapfile -t gofiles < <(git ls-files --cached --others --exclude-standard -- '*.go' ':!:*/testdata/*' ':!:testdata/*')
present=()
for f in "${gofiles[@]}"; do [[ -f "$f" ]] && present+=("$f"); done
if ((${#present[@]})); then
  unformatted="$(gofmt -l "${present[@]}")"
  [[ -z "$unformatted" ]] || fail "gofmt needed on (make fmt):"$'\n'"$unformatted"
fi

# 2. go vet
go vet ./... || fail "go vet found problems"

# 3. golangci-lint
lint_bin="$(./scripts/ensure-golangci-lint.sh)"
# --allow-serial-runners: a second run (another checkout) waits for the first instead of failing.
"$lint_bin" run --allow-serial-runners ./... || fail "golangci-lint found problems"

# 4. no compiled program in the repository (a `go build` at the root leaves one named like the command).
elf=$'\x7fELF' macho32=$'\xfe\xed\xfa\xce' macho64=$'\xfe\xed\xfa\xcf' macho64le=$'\xcf\xfa\xed\xfe'
while IFS= read -r -d '' entry; do
  mode="${entry%% *}"
  path="${entry#*$'\t'}"
  [[ -f "$path" ]] || continue
  magic=""
  LC_ALL=C IFS= read -r -d '' -n 4 magic <"$path" || true
  case "$magic" in
    "$elf" | "$macho32" | "$macho64" | "$macho64le") fail "$path is tracked but is a compiled program (add it to .gitignore, git rm --cached it)"; continue ;;
  esac
  if [[ "$mode" == 100755 && "${magic:0:2}" != "#!" ]]; then
    fail "$path is tracked as executable but is not a script"
  fi
done < <(git ls-files -z --stage)

if ((failed)); then
  echo "lint: failed" >&2
  exit 1
fi
