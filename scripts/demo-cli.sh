#!/usr/bin/env bash
# A tour of the one-shot CLI on plain network namespaces (no engine needed):
# two namespaces, a veth between them with IPv4 and IPv6 addresses, a look
# through the kernel's eyes, and a clean teardown. Run as root from the
# repository: ./scripts/demo-cli.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release
koko=./target/release/koko

cleanup() { $koko netns del demo-a demo-b >/dev/null 2>&1 || true; }
trap cleanup EXIT

set -x
$koko netns add demo-a demo-b
$koko -n demo-a,link1,10.0.1.1/24,fd00:1::1/64 -n demo-b,link2,10.0.1.2/24,fd00:1::2/64 --mtu 9000
ip -n demo-a -br addr show link1
ip -n demo-b -br addr show link2
{ set +x; } 2>/dev/null
if command -v ping >/dev/null; then
  ip netns exec demo-a ping -c 2 -W 1 10.0.1.2
else
  echo "(install iputils-ping to see a ping across the link)"
fi
set -x
$koko --json -N demo-a,link1
ip -n demo-b -br link
$koko -n demo-a,x -n demo-b,y,10.0.0.300/24 || echo "exit code $? (usage error, nothing created)"
