#!/usr/bin/env bash
# Installs what the local stack and the tests need on a fresh Debian machine (as root):
# Debian packages, npm dependencies and the offline toolchain (cached; skipped when built).
# Usage: scripts/setup.sh [toolchain family ...]   (default: every family; see
# toolchain/build.sh --help). The main job passes only what the local stack runs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
become_root "$0" "$@"

packages=(debootstrap systemd-container iproute2 util-linux procps haproxy keepalived curl openssl ca-certificates openssh-client shellcheck libseccomp-dev pkg-config gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

say "checking kernel features (network namespaces, veth, bridge)"
probe=hkprobe$$
if ! ip netns add "$probe" 2>/dev/null; then
  die "cannot create a network namespace: this kernel or container lacks CONFIG_NET_NS, or you are not root"
fi
ip netns del "$probe"
if ! ip link add "$probe" type bridge 2>/dev/null; then
  die "cannot create a bridge: this kernel lacks bridge support (CONFIG_BRIDGE)"
fi
ip link del "$probe"
if ! ip link add "${probe}a" type veth peer name "${probe}b" 2>/dev/null; then
  die "cannot create a veth pair: this kernel lacks CONFIG_VETH"
fi
ip link del "${probe}a"

cd "$HAKUBE_ROOT"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "building the offline toolchain${*:+ ($*)} (skipped when cached in $HAKUBE_TOOLCHAIN_DIR)"
if ! HAKUBE_TOOLCHAIN_DIR="$HAKUBE_TOOLCHAIN_DIR" bash toolchain/build.sh "$@"; then
  die "the toolchain build failed: see the messages above and the logs in $HAKUBE_TOOLCHAIN_DIR/logs; re-run scripts/setup.sh once fixed (finished parts are kept)"
fi
say "setup done"
