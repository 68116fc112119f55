#!/usr/bin/env bash
# The two layering rules of issue 11, checked by grep (comments included:
# a doc that names a netlink type outside src/net is a smell too).
#  1. Nothing under src/script imports the command line (crate::cli): scripts
#     and the CLI share crate::plan instead.
#  2. Only src/net names netlink packet types or rtnetlink: every other
#     module asks net/ for typed operations.
# Exits 1 and lists the offending lines if either rule is broken.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0

if hits=$(grep -rnE 'crate::cli\b|super::super::cli\b' src/script); then
  echo "layering: src/script must not use crate::cli (use crate::plan):" >&2
  echo "$hits" >&2
  status=1
fi

if hits=$(grep -rnE 'netlink_packet_|RouteNetlinkMessage|rtnetlink::' src --include='*.rs' \
  | grep -v '^src/net/'); then
  echo "layering: only src/net may name netlink packet types or rtnetlink:" >&2
  echo "$hits" >&2
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "layering: ok (script does not use cli; netlink only in src/net)"
fi
exit "$status"
