#!/usr/bin/env bash
# Prepares this machine for the tests and the README's example build, and is safe to run again:
# installs what a fresh Debian machine lacks, builds the static builder, and stages the offline
# stand-ins for nixpkgs packages that tests/nix/offline.nix brings into the store:
#   target/offline/builder/bin/portable-service-builder   (static: it runs in Nix's sandbox)
#   target/offline/squashfs-tools/bin/mksquashfs           (the host's, dynamic: see nix.conf)
#   target/offline/busybox/bin/{busybox,sh}                (Debian's static busybox)
#   target/offline/cacert/etc/ssl/certs/ca-bundle.crt      (the host's CA bundle)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nix-bin squashfs-tools busybox-static systemd-container debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "setup: building the static portable-service-builder" >&2
RUSTFLAGS='-C target-feature=+crt-static' cargo build --quiet --release --locked \
  -p portable-service-builder --target x86_64-unknown-linux-gnu

stage=target/offline
rm -rf "$stage.tmp"
mkdir -p "$stage.tmp"/{builder,squashfs-tools,busybox}/bin "$stage.tmp/cacert/etc/ssl/certs"
cp target/x86_64-unknown-linux-gnu/release/portable-service-builder "$stage.tmp/builder/bin/"
cp "$(command -v mksquashfs)" "$stage.tmp/squashfs-tools/bin/mksquashfs"
cp /bin/busybox "$stage.tmp/busybox/bin/busybox"
ln -s busybox "$stage.tmp/busybox/bin/sh"
cp /etc/ssl/certs/ca-certificates.crt "$stage.tmp/cacert/etc/ssl/certs/ca-bundle.crt"
rm -rf "$stage"; mv "$stage.tmp" "$stage"
echo "setup: ready" >&2
