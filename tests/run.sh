#!/usr/bin/env bash
# Runs every test: formatting and lints, the builder's unit and integration tests, the Nix-level
# tests that build real images offline, and the acceptance tests on a real systemd-portabled in a
# container. Installs what is missing first (tests/setup.sh). Needs root (Nix's local store,
# loop devices, systemd-nspawn).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
cargo fmt --all -- --check
cargo clippy --quiet --locked --all-targets -- -D warnings
cargo test --locked --workspace -- --test-threads "$(nproc)"
