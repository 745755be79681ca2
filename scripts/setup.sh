#!/usr/bin/env bash
# Makes a Debian or Ubuntu host ready to build and test dmabuf: installs the
# system packages the VM runner needs (QEMU, a kernel source, the kernel's
# build tools), then installs and builds the package itself. Safe to run
# again: it installs only what is missing. Runs apt-get as root, through sudo
# when needed; everything else runs as the calling user.
set -euo pipefail
cd "$(dirname "$0")/.."

# ccache lets the kernel profiles of one source share their objects;
# debian-archive-keyring verifies Debian's kernel sources (Ubuntu lacks it);
# libdrm-dev has the DRM uapi headers the addon's GPU buffers are built with.
packages=(qemu-system-x86 make gcc g++ python3 flex bison bc libelf-dev libssl-dev cpio kmod xz-utils perl ccache debian-archive-keyring libdrm-dev)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
    echo "setup: run this script as root, or: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  command -v qemu-system-x86_64 >/dev/null || { echo "setup: qemu-system-x86_64 still missing after install" >&2; exit 1; }
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))." >&2
  echo "setup: install it from your distribution or nodejs.org, then run this again." >&2
  exit 1
fi

# A lockfile install in CI, so every run tests the same dependency tree.
if [ -n "${CI:-}" ] && [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
# The kernel sources of the test matrix (6.1, 6.12, 7.2), from Debian's own
# suites through an apt configuration of the runner's own in the kernel
# cache: no system sources list changes, no root needed.
node bin/dmabuf.js vm fetch-source --all
echo "setup: ready"
