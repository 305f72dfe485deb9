#!/usr/bin/env bash
# Checks that the committed protobuf-c code matches the committed .proto files: regenerates it
# into the work tree with Protos/generate.sh and Plugins/ProtoAgent/generate.sh and fails if git
# then sees any change under Protos/, Sources/CAgentWire/, Plugins/ProtoAgent/proto/ or
# Plugins/ProtoAgent/generated/ (a modified, added or deleted file).
#
# The swift-protobuf code (Plugins/SwiftProtoAgent/sample.pb.swift) is checked without its
# generator, which takes minutes to build: scripts/generate-swift-protos records the SHA-256 of
# the .proto and of the file it generated in Plugins/SwiftProtoAgent/generated.sha256, and this
# compares both, so a .proto changed without regenerating, or generated code edited by hand, fails.
#
#   scripts/check-generated.sh    (from any directory; CI runs it in a fresh clone)
#
# On failure, run the generate.sh named in the message and commit the result together with the
# .proto change.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly root
readonly paths=(Sources/CAgentWire Protos Plugins/ProtoAgent/generated Plugins/ProtoAgent/proto)

cd "$root"

before="$(git status --porcelain --untracked-files=all -- "${paths[@]}")"

Protos/generate.sh
Plugins/ProtoAgent/generate.sh

after="$(git status --porcelain --untracked-files=all -- "${paths[@]}")"
if [[ -n "$after" ]]; then
  echo "check-generated: the generated code differs from what is committed:" >&2
  printf '%s\n' "$after" >&2
  git --no-pager diff --stat -- "${paths[@]}" >&2
  if [[ -n "$before" ]]; then
    echo "check-generated: (the work tree already had uncommitted changes there before regenerating)" >&2
  fi
  echo "check-generated: run Protos/generate.sh (Protos/, Sources/CAgentWire/) or" >&2
  echo "check-generated: Plugins/ProtoAgent/generate.sh (Plugins/ProtoAgent/) and commit the result with the .proto change." >&2
  exit 1
fi

swift_stamps=(Plugins/SwiftProtoAgent/generated.sha256)
for stamp in "${swift_stamps[@]}"; do
  if ! sha256sum --check --quiet --strict "$stamp" >&2; then
    echo "check-generated: the swift-protobuf code or its .proto differs from $stamp:" >&2
    echo "check-generated: run scripts/generate-swift-protos and commit the result with the .proto change." >&2
    exit 1
  fi
done

echo "check-generated: generated code is up to date"
