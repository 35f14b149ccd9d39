#!/usr/bin/env bash
# Runs every test: formatting and lints, the builder's unit and integration tests, the Nix-level
# tests that build real images offline, and the acceptance tests on a real systemd-portabled in
# virtual machines (systemd 252, 254, 257 and sid's newest). Installs what is missing first
# (tests/setup.sh). Needs root (Nix's local store, debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
cargo fmt --all -- --check
cargo clippy --quiet --locked --all-targets -- -D warnings
cargo test --locked --workspace -- --test-threads "$(nproc)"
