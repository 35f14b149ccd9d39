#!/usr/bin/env bash
# Prepares this machine for the tests and the README's example build, and is safe to run again:
# installs what a fresh Debian machine lacks, builds the static builder and tools, and stages the
# offline stand-ins for nixpkgs packages that tests/nix/offline.nix brings into the store:
#   target/offline/builder/bin/portable-service-builder   (static: it runs in Nix's sandbox)
#   target/offline/tools/bin/portable-service              (static: check, sign)
#   target/offline/agent/bin/portable-service-agent        (static: the hosts run it)
#   target/offline/squashfs-tools/bin/mksquashfs           (the host's, dynamic: see nix.conf)
#   target/offline/busybox/bin/{busybox,sh}                (Debian's static busybox)
#   target/offline/cacert/etc/ssl/certs/ca-bundle.crt      (the host's CA bundle)
# and what the stand-in nixpkgs (tests/nix/stand-in-nixpkgs) compiles our Rust packages with and
# runs their tests with, in Nix's sandbox:
#   target/offline/rust-toolchain.path (the store path of this machine's cargo and rustc)
#   target/offline/rustc-version       (that rustc's version, which the stand-in's says)
#   target/offline/vendor.path         (the store path of every crate of Cargo.lock, vendored)
#   target/offline/cc/bin/             (the host's gcc, as, ld, ar: stdenv's C compiler)
#   target/offline/{cryptsetup,openssl,gnupg,coreutils}/bin/   (the host's veritysetup,
#                                      openssl, gpg, sha256sum)
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
  e2fsprogs cryptsetup-bin openssl gpg gpg-agent systemd-container

echo "setup: building the static portable-service-builder, portable-service and portable-service-agent" >&2
RUSTFLAGS='-C target-feature=+crt-static' cargo build --quiet --release --locked \
  -p portable-service-builder -p portable-service-tools -p portable-service-agent \
  --target x86_64-unknown-linux-gnu

stage=target/offline
rm -rf "$stage.tmp"
mkdir -p "$stage.tmp"/{builder,tools,agent,squashfs-tools,busybox}/bin "$stage.tmp/cacert/etc/ssl/certs"
cp target/x86_64-unknown-linux-gnu/release/portable-service-builder "$stage.tmp/builder/bin/"
cp target/x86_64-unknown-linux-gnu/release/portable-service "$stage.tmp/tools/bin/"
cp target/x86_64-unknown-linux-gnu/release/portable-service-agent "$stage.tmp/agent/bin/"
cp "$(command -v mksquashfs)" "$(command -v unsquashfs)" "$stage.tmp/squashfs-tools/bin/"
cp /bin/busybox "$stage.tmp/busybox/bin/busybox"
ln -s busybox "$stage.tmp/busybox/bin/sh"
cp /etc/ssl/certs/ca-certificates.crt "$stage.tmp/cacert/etc/ssl/certs/ca-bundle.crt"

# The host's programs are dynamic: they run in the sandbox with the host's libraries, which the
# tests' nix.conf binds there. gcc finds cc1 and its headers under /usr/lib and /usr/include,
# bound there too.
host_programs() {
  local dir=$stage.tmp/$1/bin p
  mkdir -p "$dir"
  for p in "${@:2}"; do cp "$(readlink -f "$(command -v "$p")")" "$dir/$p"; done
}
host_programs cc gcc as ld ar ranlib
ln -s gcc "$stage.tmp/cc/bin/cc"
# gcc looks for its own programs and plugins beside itself; out of /usr/bin it is told where
mkdir -p "$stage.tmp/cc/nix-support"
dirname "$(dirname "$(gcc -print-search-dirs | sed -n 's/^install: //p')")" >"$stage.tmp/cc/nix-support/gcc-exec-prefix"
host_programs cryptsetup veritysetup
# of stdenv's GNU coreutils, what the tests run (busybox's sha256sum lacks --strict)
host_programs coreutils sha256sum
host_programs openssl openssl
# its configuration, which it reads from the host's /etc (tests/nix/offline.nix points it here)
cp -L "$(openssl version -d | sed 's/^OPENSSLDIR: "\(.*\)"$/\1/')/openssl.cnf" "$stage.tmp/openssl/"
host_programs gnupg gpg gpg-agent gpgconf
# These two go into the store here, once: as builtins.path, every evaluation of a package built
# with them hashed their 700 MB again (3 s and 9 s).
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
toolchain=$stage.tmp/add/rust-toolchain
mkdir -p "$toolchain/bin" "$toolchain/lib/rustlib"
for p in cargo rustc rustdoc cargo-clippy clippy-driver cargo-fmt rustfmt; do
  if [ -e "$sysroot/bin/$p" ]; then cp "$sysroot/bin/$p" "$toolchain/bin/"; fi
done
cp -a "$sysroot"/lib/*.so* "$toolchain/lib/"
cp -a "$sysroot/lib/rustlib/$host" "$toolchain/lib/rustlib/"
nix-store --add "$toolchain" >"$stage.tmp/rust-toolchain.path"
rustc -V | cut -d' ' -f2 >"$stage.tmp/rustc-version"
cargo vendor --quiet --locked --versioned-dirs "$stage.tmp/add/vendor" >/dev/null
nix-store --add "$stage.tmp/add/vendor" >"$stage.tmp/vendor.path"
rm -rf "$stage.tmp/add"

rm -rf "$stage"; mv "$stage.tmp" "$stage"
echo "setup: ready" >&2
