#!/usr/bin/env bash
# Regenerates the protobuf-c code of the CAgentWire target from the .proto files in Protos/.
#
#   Protos/generate.sh            (from any directory)
#
# Inputs:  Protos/agent_worker.proto, Protos/cloudevent.proto, Protos/agentd_control.proto (agentd's
#          own control-channel messages, which import agent_worker.proto), and
#          google/protobuf/any.proto and google/protobuf/timestamp.proto from the system's protobuf
#          include directory (Debian package libprotobuf-dev), which they import. protobuf-c ships
#          no C code for those two, so we generate it here as well.
# Outputs: Sources/CAgentWire/*.pb-c.c and Sources/CAgentWire/google/protobuf/*.pb-c.c,
#          Sources/CAgentWire/include/*.pb-c.h and Sources/CAgentWire/include/google/protobuf/*.pb-c.h.
#          The generated code includes its headers as "agent_worker.pb-c.h",
#          "google/protobuf/any.pb-c.h" and so on; SwiftPM puts Sources/CAgentWire/include on the
#          header search path of the target, so those includes resolve unchanged.
#
# Needs protoc-c from protobuf-c-compiler 1.4.1 (Debian bookworm). Another version may generate
# different code, which scripts/check-generated.sh reports as a change; set
# PROTOC_C_ANY_VERSION=1 to run with it anyway. PROTOBUF_INCLUDE overrides the directory that
# holds google/protobuf/any.proto (default /usr/include).
set -euo pipefail

export LC_ALL=C

expected_protoc_c_version="protobuf-c 1.4.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
protos="$root/Protos"
target="$root/Sources/CAgentWire"
protobuf_include="${PROTOBUF_INCLUDE:-/usr/include}"
readonly expected_protoc_c_version root protos target protobuf_include

fail() {
  echo "generate.sh: $*" >&2
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

for wkt in any timestamp; do
  [[ -f "$protobuf_include/google/protobuf/$wkt.proto" ]] ||
    fail "$protobuf_include/google/protobuf/$wkt.proto not found; install it with: apt-get install libprotobuf-dev (or set PROTOBUF_INCLUDE)"
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# The files are named relative to the include paths, so the generated code says
# "Generated from: agent_worker.proto" and "google/protobuf/any.proto" whatever the checkout's
# location, and includes its headers by those same relative names.
(
  cd "$protos"
  protoc-c \
    --proto_path="$protos" \
    --proto_path="$protobuf_include" \
    --c_out="$scratch" \
    agent_worker.proto \
    agentd_control.proto \
    cloudevent.proto \
    google/protobuf/any.proto \
    google/protobuf/timestamp.proto
)

# Every generated file must say it is generated on its first line.
while IFS= read -r -d '' file; do
  first_line="$(head -n 1 "$file")"
  [[ "$first_line" == *"DO NOT EDIT"* ]] ||
    fail "${file#"$scratch"/} does not start with a DO NOT EDIT line"
done < <(find "$scratch" -type f -print0)

# Replace the previous generation whole, so that a file no longer generated does not linger.
find "$target" -name '*.pb-c.[ch]' -type f -delete 2>/dev/null || true

install_generated() {
  local relative="$1" directory
  case "$relative" in
    *.h) directory="$target/include/$(dirname "$relative")" ;;
    *.c) directory="$target/$(dirname "$relative")" ;;
    *) fail "unexpected generated file $relative" ;;
  esac
  mkdir -p "$directory"
  cp "$scratch/$relative" "$directory/"
  chmod 0644 "$directory/$(basename "$relative")"
}

while IFS= read -r relative; do
  install_generated "$relative"
done < <(cd "$scratch" && find . -type f -name '*.pb-c.[ch]' | sed 's|^\./||' | sort)

# Remove directories emptied by the deletion above (never the include directory itself).
find "$target" -mindepth 1 -type d -empty -not -path "$target/include" -delete

echo "generate.sh: regenerated $(cd "$scratch" && find . -type f | wc -l | tr -d ' ') files in ${target#"$root"/}"
