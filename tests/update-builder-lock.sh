#!/usr/bin/env bash
# Writes nix/builder.Cargo.lock (or the file given): the lock of the builder's own workspace
# (nix/builder-workspace.nix), which cargo cuts from Cargo.lock, keeping every version Cargo.lock
# chose and only the packages, and the optional dependencies, that the builder's crates use.
# Run it after a change of Cargo.lock or of the builder's dependencies; tests/tests/flake.rs
# fails until the committed file is what this writes.
#   tests/update-builder-lock.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-nix/builder.Cargo.lock}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nix_eval() {
  nix --extra-experimental-features nix-command eval --impure --raw \
    --expr "let w = import $PWD/nix/builder-workspace.nix; in $1"
}
for member in $(nix_eval 'builtins.concatStringsSep " " w.members'); do
  mkdir -p "$work/$member"
  cp -r "$member/Cargo.toml" "$member/src" "$work/$member/"
done
cp "$(nix_eval 'toString w.manifest')" "$work/Cargo.toml"
cp Cargo.lock "$work/Cargo.lock"
(cd "$work" && cargo update --workspace --offline --quiet)
cp "$work/Cargo.lock" "$out"
