#!/usr/bin/env bash
# A private containerd for koko's CRI tests: Debian's containerd (1.6, a
# dependency of docker.io) with its CRI plugin, its own root, state and
# socket under $BASE, and a tiny local image, `koko-test/pause:1`, built from
# busybox-static (no registry is reachable from these machines). It serves
# as the pod sandbox image (its entrypoint only sleeps, as a pause image
# does) and as the image of the tests' containers.
#
#   tests/setup/containerd.sh        install what is missing, start our
#                                    containerd if it does not answer, import
#                                    the image if absent
#   tests/setup/containerd.sh stop   stop the containerd THIS script started
#                                    (by the pid it recorded), nothing else
#
# Idempotent; tests/run runs it before the tests. It never touches
# /run/containerd (docker's containerd may live there).
#
# Networking: the CRI plugin insists on a CNI network for every pod that is
# not on the host network, and koko is what wires the pods in the tests. So
# the CNI configuration names one plugin of our own, `koko-test-none`, a
# shell script that changes nothing and only reports an interface (the CRI
# plugin wants one named eth0 with an address, and calls Debian's `loopback`
# plugin itself to bring `lo` up). The pod gets no interface but `lo` until
# koko gives it one.
set -euo pipefail

BASE=/run/koko-test-containerd
SOCK=$BASE/containerd.sock
IMAGE=koko-test/pause:1
LOCK=$BASE/lock
mkdir -p "$BASE"

log() { echo "containerd.sh: $*" >&2; }

# alive_as PID NAME
. "$(dirname "$0")/lib/process.sh"

answers() { [ -S "$SOCK" ] && timeout 3 ctr -a "$SOCK" version >/dev/null 2>&1; }

if [ "${1:-start}" = stop ]; then
  exec 9>"$LOCK"
  flock 9
  pid=$(cat "$BASE/containerd.pid" 2>/dev/null || true)
  if alive_as "$pid" containerd; then
    log "stopping containerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      alive_as "$pid" containerd || break
      sleep 0.1
    done
    alive_as "$pid" containerd && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$BASE/containerd.pid"
  exit 0
fi

exec 9>"$LOCK"
flock 9

# --- packages ---------------------------------------------------------------
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] || need+=(busybox-static)
[ -x /usr/lib/cni/loopback ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- configuration -----------------------------------------------------------
mkdir -p "$BASE/cni/bin" "$BASE/cni/conf"
cat >"$BASE/cni/bin/koko-test-none" <<'EOF'
#!/bin/sh
# A CNI plugin that wires nothing: it only reports the interface and
# address the CRI plugin insists on (the pod's loopback address), so the pod
# starts; koko adds the real links.
case "$CNI_COMMAND" in
  ADD)
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"127.0.0.1/8","interface":0}]}\n' "$CNI_IFNAME" "$CNI_NETNS"
    ;;
  VERSION)
    echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}'
    ;;
  *) ;;
esac
EOF
chmod 755 "$BASE/cni/bin/koko-test-none"
ln -sf /usr/lib/cni/loopback "$BASE/cni/bin/loopback"
# koko's own CNI plugin, chained after it as in a cluster: the CNI tests
# link the koko binary under test to $BASE/cni/koko; until one has, the
# wrapper answers as koko-test-none does. Pods not in its topology are
# left alone.
mkdir -p "$BASE/cni/topology" "$BASE/cni/state"
cat >"$BASE/cni/bin/koko-cni" <<EOF
#!/bin/sh
if [ -x "$BASE/cni/koko" ]; then exec "$BASE/cni/koko" cni; fi
case "\$CNI_COMMAND" in
  ADD) exec "$BASE/cni/bin/koko-test-none" ;;
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}' ;;
  *) ;;
esac
EOF
chmod 755 "$BASE/cni/bin/koko-cni"
cat >"$BASE/cni/conf/10-koko-test-none.conflist" <<EOF
{"cniVersion":"1.0.0","name":"koko-test-none","plugins":[{"type":"koko-test-none"},
 {"type":"koko-cni","topology":"$BASE/cni/topology","stateDir":"$BASE/cni/state"}]}
EOF
cat >"$BASE/config.toml.new" <<EOF
version = 2
root = "$BASE/root"
state = "$BASE/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$BASE/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$IMAGE"
  disable_apparmor = true
  # Pods ask for oom_score_adj -998, which needs CAP_SYS_RESOURCE; these
  # machines' root lacks it. Clamp to containerd's own value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$BASE/cni/bin"
    conf_dir = "$BASE/cni/conf"
EOF

# A changed configuration takes effect by restarting our containerd.
restart=0
if ! cmp -s "$BASE/config.toml.new" "$BASE/config.toml"; then
  mv "$BASE/config.toml.new" "$BASE/config.toml"
  restart=1
else
  rm -f "$BASE/config.toml.new"
fi

# --- containerd --------------------------------------------------------------
if [ "$restart" = 1 ] || ! answers; then
  old=$(cat "$BASE/containerd.pid" 2>/dev/null || true)
  if alive_as "$old" containerd; then
    kill -TERM "$old" 2>/dev/null || true
    for _ in $(seq 1 50); do alive_as "$old" containerd || break; sleep 0.1; done
  fi
  rm -f "$SOCK"
  logfile=$BASE/containerd.log
  log "starting containerd (log: $logfile)"
  # Own session, stdin closed, no fd beyond 0-2 (it must not inherit our lock).
  pid=$(
    (
      for fd in /proc/$BASHPID/fd/*; do
        n=${fd##*/}
        if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
      done
      exec setsid containerd --config "$BASE/config.toml" </dev/null >>"$logfile" 2>&1
    ) &
    echo $!
  )
  echo "$pid" >"$BASE/containerd.pid"
  for _ in $(seq 1 300); do
    answers && break
    if ! alive_as "$pid" containerd; then
      log "containerd exited during start-up; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  answers || { log "containerd did not answer on $SOCK within 30 s"; tail -n 20 "$logfile" >&2; exit 1; }
fi

# --- the image -----------------------------------------------------------------
# A Docker-format image archive made by hand: one layer (busybox and a few
# applet links), a config whose entrypoint sleeps, a manifest naming the tag.
if ! ctr -a "$SOCK" -n k8s.io images ls -q 2>/dev/null | grep -qx "docker.io/$IMAGE"; then
  log "importing $IMAGE"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  root=$work/rootfs
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/proc" "$root/sys" "$root/dev"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh ip ping nc sleep cat echo ls ps kill; do
    ln -sf busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  mkdir -p "$work/archive"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work/archive/layer.tar" .
  diff_id=sha256:$(sha256sum "$work/archive/layer.tar" | cut -d' ' -f1)
  cat >"$work/archive/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sleep","2147483647"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["$diff_id"]}}
EOF
  echo "[{\"Config\":\"config.json\",\"RepoTags\":[\"$IMAGE\"],\"Layers\":[\"layer.tar\"]}]" >"$work/archive/manifest.json"
  tar -C "$work/archive" -cf "$work/image.tar" manifest.json config.json layer.tar
  ctr -a "$SOCK" -n k8s.io images import "$work/image.tar" >/dev/null
fi
