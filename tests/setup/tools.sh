#!/usr/bin/env bash
# Tools the tests use to check koko's output from the outside (never for
# koko's own behaviour): Graphviz's `dot` (koko graph --format svg renders
# through it, and tests render the DOT koko prints), tcpdump (opens the pcap
# files koko capture writes), zsh and fish (parse the completion scripts),
# and Debian's matplotlib (the scale benchmark's plot). Idempotent: installs
# only what is missing. Must run as root.
set -euo pipefail
need=()
command -v dot >/dev/null || need+=(graphviz)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
[ ${#need[@]} -eq 0 ] && exit 0
echo "tools.sh: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
