#!/usr/bin/env bash
# The container engines koko's tests run against: Debian's Docker engine
# (docker.io) and Podman's Docker-compatible API service, plus a tiny local
# test image, `koko-test/busybox:1`, built from busybox-static (no registry is
# reachable from these machines).
#
#   tests/setup/docker.sh          install what is missing, start what is not
#                                  running, import the image if absent
#   tests/setup/docker.sh stop     stop the daemons THIS script started (by the
#                                  pids it recorded), nothing else
#
# Idempotent: a second run finds both engines answering and the image present
# and returns in well under a second. tests/run runs it before the tests; CI
# (a fresh machine) gets everything installed and started here.
#
# dockerd is started with flags that leave the host's network alone: no
# docker0 bridge, no iptables rules, no change to ip_forward (the defaults
# would create docker0, flip net.ipv4.ip_forward and set the iptables FORWARD
# policy to DROP, and those changes outlive the daemon). Test containers run
# with `--network none`; koko gives them their links.
set -euo pipefail

IMAGE=koko-test/busybox:1
DOCKER_SOCK=/var/run/docker.sock
PODMAN_SOCK=/run/podman/podman.sock
STATE=/var/run/koko-test-engines
LOCK=$STATE/lock
mkdir -p "$STATE"

log() { echo "docker.sh: $*" >&2; }

# Does the engine behind unix socket $1 answer GET /_ping?
ping_engine() {
  local sock=$1
  [ -S "$sock" ] || return 1
  if command -v curl >/dev/null; then
    [ "$(curl -s --max-time 2 --unix-socket "$sock" http://engine/_ping 2>/dev/null)" = OK ]
  else
    timeout 3 docker -H "unix://$sock" version >/dev/null 2>&1
  fi
}

# alive_as PID NAME
. "$(dirname "$0")/lib/process.sh"

# Start a daemon in the background, in its own session, with stdin closed,
# output to a log file and NO inherited fd beyond 0-2 (a daemon that inherits
# our lock fd would hold the lock for life). Prints its pid.
spawn_daemon() {
  local logfile=$1
  shift
  (
    for fd in /proc/$BASHPID/fd/*; do
      n=${fd##*/}
      if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@" </dev/null >>"$logfile" 2>&1
  ) &
  echo $!
}

wait_for() {
  local sock=$1 what=$2 pid=$3 logfile=$4 name=$5
  for _ in $(seq 1 300); do
    ping_engine "$sock" && return 0
    if ! alive_as "$pid" "$name"; then
      log "$what exited during start-up; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "$what did not answer on $sock within 30 s; last lines of $logfile:"
  tail -n 20 "$logfile" >&2 || true
  return 1
}

# Stop the daemon whose pid we recorded in $STATE/$1.pid, if it is still that
# daemon (command name $2). Never by name: an engine someone else runs stays.
stop_recorded() {
  local file=$STATE/$1.pid name=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if alive_as "$pid" "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      alive_as "$pid" "$name" || break
      sleep 0.1
    done
    if alive_as "$pid" "$name"; then
      log "$name (pid $pid) ignored SIGTERM for 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

if [ "${1:-start}" = stop ]; then
  exec 9>"$LOCK"
  flock 9
  stop_recorded podman podman
  stop_recorded dockerd dockerd
  exit 0
fi

exec 9>"$LOCK"
flock 9

# --- packages ---------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] || need+=(busybox-static)
command -v podman >/dev/null || need+=(podman)
command -v nsenter >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- dockerd ----------------------------------------------------------------
remove_stale_pid_files() {
  # /run is not a tmpfs on these machines: pid files from an earlier boot (or
  # a killed daemon) block start-up. Remove them only when their pid is not a
  # live dockerd/containerd.
  local pf f name
  for pf in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd; do
    f=${pf%%:*} name=${pf##*:}
    if [ -f "$f" ] && ! alive_as "$(cat "$f" 2>/dev/null)" "$name"; then
      log "removing stale $f"
      rm -f "$f"
    fi
  done
}

if ! ping_engine "$DOCKER_SOCK"; then
  remove_stale_pid_files
  other=$(cat /var/run/docker.pid 2>/dev/null || true)
  if alive_as "$other" dockerd; then
    # Someone's dockerd is starting (or stopping): give it time, and start
    # our own only if it goes away.
    log "a dockerd (pid $other) runs but does not answer on $DOCKER_SOCK yet; waiting for it"
    wait_for "$DOCKER_SOCK" dockerd "$other" /dev/null dockerd || true
    remove_stale_pid_files
  fi
  if ! ping_engine "$DOCKER_SOCK"; then
    logfile=$STATE/dockerd.log
    log "starting dockerd (log: $logfile)"
    pid=$(spawn_daemon "$logfile" dockerd --bridge=none --iptables=false --ip-forward=false --host "unix://$DOCKER_SOCK")
    echo "$pid" >"$STATE/dockerd.pid"
    wait_for "$DOCKER_SOCK" dockerd "$pid" "$logfile" dockerd
  fi
fi

# --- podman's Docker-compatible API service -----------------------------------
if ! ping_engine "$PODMAN_SOCK"; then
  if alive_as "$(cat "$STATE/podman.pid" 2>/dev/null)" podman; then
    kill -TERM "$(cat "$STATE/podman.pid")" 2>/dev/null || true
  fi
  mkdir -p "$(dirname "$PODMAN_SOCK")"
  rm -f "$PODMAN_SOCK"
  logfile=$STATE/podman.log
  log "starting podman system service (log: $logfile)"
  pid=$(spawn_daemon "$logfile" podman system service --time=0 "unix://$PODMAN_SOCK")
  echo "$pid" >"$STATE/podman.pid"
  wait_for "$PODMAN_SOCK" "podman system service" "$pid" "$logfile" podman
fi

# --- the test image -----------------------------------------------------------
make_rootfs() {
  local root=$1
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh ip ping ping6 nc wget httpd sleep timeout cat echo printf mkdir ls ps kill ifconfig route sysctl grep; do
    ln -sf busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

have_docker_image() { docker image inspect "$IMAGE" >/dev/null 2>&1; }
have_podman_image() { podman image exists "$IMAGE" 2>/dev/null; }

if ! have_docker_image || ! have_podman_image; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  make_rootfs "$root"
  if ! have_docker_image; then
    log "importing $IMAGE into docker"
    tar -C "$root" -c . | docker import --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
  fi
  if ! have_podman_image; then
    log "importing $IMAGE into podman"
    tar -C "$root" -cf "$root.tar" .
    podman import -q --change 'CMD ["/bin/sh"]' "$root.tar" "$IMAGE" >/dev/null
    rm -f "$root.tar"
  fi
fi
