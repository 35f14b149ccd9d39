#!/usr/bin/env bash
# Runs every VM cell of the host agent's scenarios (tests/tests/acceptance/sysupdate.rs) that the
# test command leaves out for its time: the failing versions on 252 and 257, the extension's
# refusal on 252, the signed image on 252, the power cut on the newest; with
# PORTABLE_SERVICE_TESTS_POWER_CUTS=all, the power cut at every point of the sweep (on 252 too:
# add `sysupdate::a_power_cut` to run those alone). Not part of tests/run.sh; numbers in
# BENCHMARKS.md.
#
#   tests/updates.sh [TEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
cargo test --locked -p portable-service-tests --test acceptance -- --ignored \
  --skip systemd_239 --skip systemd_245 --skip systemd_249 --test-threads "$(nproc)" \
  sysupdate:: "$@"
