#!/usr/bin/env bash
# What building koko needs beyond cargo: `protoc` (Debian's protobuf-compiler),
# because the CRI client's gRPC code (crate k8s-cri) is generated at build
# time. Idempotent: returns at once when protoc is there. The README's build
# command, tests/run (which runs every tests/setup/*.sh) and .ci/run (before
# clippy) call it. Must run as root when protoc is missing.
set -euo pipefail
command -v protoc >/dev/null && exit 0
echo "build-deps.sh: installing protobuf-compiler (protoc)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler >/dev/null
