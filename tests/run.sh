#!/usr/bin/env bash
# Runs every test: formatting and lints, the crates' unit and integration tests (in Nix's
# sandbox, as the tools package's check phase), the Nix-level tests that build real images
# offline, and the acceptance tests on a real systemd-portabled in virtual machines (systemd
# 247, 252, 254, 257 and sid's newest). Installs what is missing first (tests/setup.sh). Needs root
# (Nix's local store, debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
cargo fmt --all -- --check
# Nix files as nixfmt (RFC 166, what nixpkgs and the flake's `fmt` check use) formats them, where
# a nixfmt is on PATH. These machines have none and can't install one: no registry they reach
# (Debian, PyPI, npm, crates.io) has a package of it (README: Tests), and another formatter's
# style is not nixfmt's. So here the Nix files are NOT checked, and this says so.
if command -v nixfmt >/dev/null; then
  git ls-files -z '*.nix' | xargs -0 nixfmt --check
else
  echo "run.sh: no nixfmt on PATH (none can be installed here): the Nix files' formatting is NOT checked" >&2
fi
cargo clippy --quiet --locked --all-targets -- -D warnings
# The crates' own tests (builder, rules, tools) run once, in the tools package's check phase:
# in Nix's sandbox, as users' Nix runs them (tests/tests/flake.rs builds that package). Here,
# the three that package leaves out: they need root (a tmpfs mount, dropping root's
# capabilities) or read 9 GiB through a pipe.
cargo test --locked -p portable-service-builder --test image -- --test-threads "$(nproc)" \
  a_file_of_several_gib_comes_out_whole a_full_disk_fails_the_build_and_leaves_nothing \
  a_store_file_that_cannot_be_read_is_named
# and those it skips for want of an interactive bash, of GNU's cp behind `sh` and of prlimit
cargo test --locked -p portable-service-tools --test command_line bash_loads_the_completions
cargo test --locked -p portable-service-tools --test messages the_copy_a_store_refusal_names_signs
cargo test --locked -p portable-service-tools --test check -- \
  a_directory_deeper_than_1024_levels_is_refused_and_one_of_1000_is_read \
  long_paths_named_by_thousands_of_links_are_refused_within_64_mib \
  hard_links_to_a_large_sparse_file_are_refused_before_backhand_copies_its_blocks
# The host agent's tests (the simulator's sweeps, the feed over loopback HTTP, gpg's
# signatures, the real host's files), with the static release build tests/setup.sh made for
# the VMs, whose compiled crates they reuse (the agent package's check phase runs the same
# tests in Nix's sandbox; building it here took minutes the test command hasn't got).
RUSTFLAGS='-C target-feature=+crt-static' cargo test --locked --release \
  --target x86_64-unknown-linux-gnu -p portable-service-agent -- --test-threads "$(nproc)"
cargo test --locked -p portable-service-tests -- --test-threads "$(nproc)"
