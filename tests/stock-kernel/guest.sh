#!/bin/sh
# Runs inside the stock-kernel guest (started by tests/stock-kernel/run).
# $1 is the run directory, shared read-write with the host: the settings
# come in as $1/env, and the tests' exit status goes out as $1/status. The
# host trusts only that file: virtme-ng's own exit code is 255 for a crash,
# a signal and a failed start alike.
run="$1"
. "$run/env"

# The guest does not inherit the host's environment: everything the tests
# need is set here, from $run/env.
export CI PATH HOME=/root KOKO_LANE_KERNEL=stock

# This kernel loads what it lacks (8021q, dummy, sch_prio, ...) on demand
# by running the program named here; the host has no modprobe of its own.
echo "$KOKO_LANE_CACHE/bin/modprobe" >/proc/sys/kernel/modprobe

# The root filesystem is the host's, over 9p: every exec of the 130 MB
# debug koko binary would read it through 9p again. A copy in the guest's
# memory, mounted over the original, is read once.
mkdir -p /run/koko-lane
if cp "$KOKO_LANE_KOKO" /run/koko-lane/koko; then
  mount --bind /run/koko-lane/koko "$KOKO_LANE_KOKO"
fi

echo "stock-kernel lane: kernel $(uname -r), $(nproc) vCPUs"
cd "$KOKO_LANE_REPO" || exit 1
# The test binaries were built on the host; nextest runs them without
# building (both metadata files are given).
cargo-nextest nextest run \
  --binaries-metadata "$run/binaries.json" \
  --cargo-metadata "$run/metadata.json" \
  --workspace-remap "$KOKO_LANE_REPO" \
  --no-fail-fast --test-threads 2 \
  -E "$KOKO_LANE_FILTER"
status=$?
echo "$status" >"$run/status"
exit "$status"
