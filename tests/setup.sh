#!/usr/bin/env bash
# Prepares this machine for the tests and the README's example build, and is safe to run again:
# installs what a fresh Debian machine lacks, builds the static builder and tools, and stages the
# offline stand-ins for nixpkgs packages that tests/nix/offline.nix brings into the store:
#   target/offline/builder/bin/portable-service-builder   (static: it runs in Nix's sandbox)
#   target/offline/tools/bin/portable-service              (static: check, sign)
#   target/offline/squashfs-tools/bin/mksquashfs           (the host's, dynamic: see nix.conf)
#   target/offline/busybox/bin/{busybox,sh}                (Debian's static busybox)
#   target/offline/cacert/etc/ssl/certs/ca-bundle.crt      (the host's CA bundle)
set -euo pipefail
cd "$(dirname "$0")/.."

# Nix (with its recommended nix-setup-systemd, which makes the nixbld build users) and the
# stand-ins' sources; then, without recommends, what the acceptance tests' virtual machines
# need: qemu, Debian's kernel for the guests, debootstrap for their roots (tests/src/guest.rs),
# cryptsetup's veritysetup and openssl, which the integrity tests check our files with, and gpg,
# which signs the update feeds (publish) and makes the tests' throwaway keys.
install_missing() {
  local missing=() p
  for p in "${@:2}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "setup: installing ${missing[*]}" >&2
  [ -n "${updated:-}" ] || { apt-get update -qq; updated=1; }
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $1 "${missing[@]}" >/dev/null
}
install_missing "" nix-bin squashfs-tools busybox-static
install_missing --no-install-recommends qemu-system-x86 linux-image-amd64 debootstrap kmod \
  e2fsprogs cryptsetup-bin openssl gpg gpg-agent

echo "setup: building the static portable-service-builder and portable-service" >&2
RUSTFLAGS='-C target-feature=+crt-static' cargo build --quiet --release --locked \
  -p portable-service-builder -p portable-service-tools --target x86_64-unknown-linux-gnu

stage=target/offline
rm -rf "$stage.tmp"
mkdir -p "$stage.tmp"/{builder,tools,squashfs-tools,busybox}/bin "$stage.tmp/cacert/etc/ssl/certs"
cp target/x86_64-unknown-linux-gnu/release/portable-service-builder "$stage.tmp/builder/bin/"
cp target/x86_64-unknown-linux-gnu/release/portable-service "$stage.tmp/tools/bin/"
cp "$(command -v mksquashfs)" "$stage.tmp/squashfs-tools/bin/mksquashfs"
cp /bin/busybox "$stage.tmp/busybox/bin/busybox"
ln -s busybox "$stage.tmp/busybox/bin/sh"
cp /etc/ssl/certs/ca-certificates.crt "$stage.tmp/cacert/etc/ssl/certs/ca-bundle.crt"
rm -rf "$stage"; mv "$stage.tmp" "$stage"
echo "setup: ready" >&2
