#!/usr/bin/env bash
# Regenerates ProtoAgent's protobuf-c code from its schema.
#
#   Plugins/ProtoAgent/generate.sh      (from any directory)
#
# Input:   Plugins/ProtoAgent/proto/sample.proto (imports nothing).
# Outputs: Plugins/ProtoAgent/generated/sample.pb-c.c and sample.pb-c.h. The .c includes its
#          header as "sample.pb-c.h", which resolves beside it; proto_agent.c includes
#          "generated/sample.pb-c.h". SwiftPM compiles every .c under the target's path, the
#          generated one included. Symbols are agentd__samples__*, distinct from CAgentWire's.
#
# Needs protoc-c from protobuf-c-compiler 1.4.1 (Debian bookworm). Another version may generate
# different code, which scripts/check-generated.sh reports as a change; set
# PROTOC_C_ANY_VERSION=1 to run with it anyway.
set -euo pipefail

export LC_ALL=C

expected_protoc_c_version="protobuf-c 1.4.1"
plugin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
protos="$plugin/proto"
target="$plugin/generated"
readonly expected_protoc_c_version plugin protos target

fail() {
  echo "ProtoAgent/generate.sh: $*" >&2
  exit 1
}

command -v protoc-c >/dev/null 2>&1 ||
  fail "protoc-c not found; install it with: apt-get install protobuf-c-compiler"

# (No pipe into head: with pipefail, head exiting first can fail the pipeline with SIGPIPE.)
protoc_c_version="$(protoc-c --version 2>&1)"
protoc_c_version="${protoc_c_version%%$'\n'*}"
if [[ "$protoc_c_version" != "$expected_protoc_c_version" && "${PROTOC_C_ANY_VERSION:-0}" != 1 ]]; then
  fail "protoc-c is '$protoc_c_version', the committed code comes from '$expected_protoc_c_version' (set PROTOC_C_ANY_VERSION=1 to go on anyway)"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Named relative to the proto path, so the generated code says "Generated from: sample.proto"
# whatever the checkout's location.
(
  cd "$protos"
  protoc-c --proto_path="$protos" --c_out="$scratch" sample.proto
)

# Every generated file must say it is generated on its first line.
while IFS= read -r -d '' file; do
  first_line="$(head -n 1 "$file")"
  [[ "$first_line" == *"DO NOT EDIT"* ]] ||
    fail "${file#"$scratch"/} does not start with a DO NOT EDIT line"
done < <(find "$scratch" -type f -print0)

# Replace the previous generation whole, so that a file no longer generated does not linger.
rm -rf "$target"
mkdir -p "$target"
while IFS= read -r relative; do
  cp "$scratch/$relative" "$target/"
  chmod 0644 "$target/$relative"
done < <(cd "$scratch" && find . -maxdepth 1 -type f -name '*.pb-c.[ch]' | sed 's|^\./||' | sort)

echo "ProtoAgent/generate.sh: regenerated $(find "$target" -type f | wc -l | tr -d ' ') files in Plugins/ProtoAgent/generated"
