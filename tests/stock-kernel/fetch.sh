#!/usr/bin/env bash
# Fetch, once, what the stock-kernel lane needs, into a cache directory
# outside the repository (default /var/cache/koko-lane; $KOKO_LANE_CACHE):
#
#   root/     Debian 12's stock kernel (linux-image-amd64) and QEMU with its
#             firmware and libraries, unpacked with `dpkg -x`. Nothing is
#             installed: `apt-get install qemu-system-x86` would remove this
#             machine's newer qemu-utils, and the host's /boot and module
#             tree must not change.
#   venv/     virtme-ng from PyPI (it boots a kernel on the host's own
#             filesystem, shared read-only over 9p).
#   ready     written last; its presence means the cache is complete.
#
# Prints the cache directory on success.
set -euo pipefail

cache="${KOKO_LANE_CACHE:-/var/cache/koko-lane}"
virtme_version="1.42"

if [ -e "$cache/ready" ]; then
  echo "$cache"
  exit 0
fi

mkdir -p "$cache/debs" "$cache/root"
cd "$cache/debs"

# apt's package lists may be missing on a fresh machine.
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
  apt-get update -qq
fi

# The kernel: the metapackage names the versioned image package.
image="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')"
if [ -z "$image" ]; then
  echo "stock-kernel lane: cannot resolve linux-image-amd64" >&2
  exit 1
fi

# QEMU, its firmware, kmod (modprobe/depmod; this host has no module
# support so it may lack them) and every library the host lacks: ask apt
# what an install would add, without installing anything.
mapfile -t pkgs < <(
  apt-get install -s --no-install-recommends qemu-system-x86 kmod busybox-static 2>/dev/null |
    awk '/^Inst / && $3 !~ /^\[/ {print $2}'
)
# Libraries QEMU links that the host has installed are used from the host;
# only absent ones are downloaded (listed by the simulation above).
# (apt warns that its _apt user cannot write here; the download is fine.)
apt-get download -q "$image" "${pkgs[@]}" >/dev/null 2>&1 ||
  apt-get download "$image" "${pkgs[@]}"

for deb in ./*.deb; do
  dpkg -x "$deb" "$cache/root"
done

# kmod's tools are symlinks to /bin/kmod (absolute): give them names of
# our own that point into the cache. modprobe is what the guest's kernel
# runs to load a module on demand (the lane points
# /proc/sys/kernel/modprobe at it).
mkdir -p "$cache/bin"
for tool in depmod modprobe; do
  ln -sfn ../root/bin/kmod "$cache/bin/$tool"
done

# The .deb ships no modules.dep: build it inside the cache's own tree.
kver="${image#linux-image-}"
"$cache/bin/depmod" -b "$cache/root" "$kver"

# QEMU from the cache: its libraries and firmware are not where the
# binary looks by default.
root="$cache/root"
cat >"$cache/bin/qemu-system-x86_64" <<WRAPPER
#!/bin/sh
LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$root/usr/bin/qemu-system-x86_64" -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" "\$@"
WRAPPER
chmod +x "$cache/bin/qemu-system-x86_64"
"$cache/bin/qemu-system-x86_64" -version >/dev/null

# virtme-ng in a virtualenv of its own (the host's Python is untouched).
if ! python3 -m venv "$cache/venv"; then
  # Debian's own python3 makes virtualenvs only with python3-venv.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
  python3 -m venv "$cache/venv"
fi
"$cache/venv/bin/pip" install -q "virtme-ng==$virtme_version"

echo "$kver" >"$cache/kernel-version"
touch "$cache/ready"
echo "$cache"
