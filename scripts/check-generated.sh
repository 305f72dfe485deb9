#!/usr/bin/env bash
# Checks that the committed protobuf-c code matches the committed .proto files: regenerates it
# into the work tree with Protos/generate.sh and fails if git then sees any change under
# Protos/ or Sources/CAgentWire/ (a modified, added or deleted file).
#
#   scripts/check-generated.sh    (from any directory; CI runs it in a fresh clone)
#
# On failure, run Protos/generate.sh and commit the result together with the .proto change.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly root
readonly paths=(Sources/CAgentWire Protos)

cd "$root"

before="$(git status --porcelain --untracked-files=all -- "${paths[@]}")"

Protos/generate.sh

after="$(git status --porcelain --untracked-files=all -- "${paths[@]}")"
if [[ -n "$after" ]]; then
  echo "check-generated: the generated code differs from what is committed:" >&2
  printf '%s\n' "$after" >&2
  git --no-pager diff --stat -- "${paths[@]}" >&2
  if [[ -n "$before" ]]; then
    echo "check-generated: (the work tree already had uncommitted changes there before regenerating)" >&2
  fi
  echo "check-generated: run Protos/generate.sh and commit the result with the .proto change." >&2
  exit 1
fi

echo "check-generated: generated code is up to date"
