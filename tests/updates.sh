#!/usr/bin/env bash
# Runs every VM cell of the host agent's scenarios (tests/tests/acceptance/sysupdate.rs) that the
# test command leaves out for its time: the failing versions on 252 and 257, the extension's
# refusal on 252, the signed image on 252, the power cut on the newest, two images on one host
# (252 and the newest), the agent's memory in an update of a 200 MB image; with PORTABLE_SERVICE_TESTS_POWER_CUTS=all, the power cut at
# every point of the sweep. Not part of tests/run.sh; numbers in BENCHMARKS.md.
#
#   tests/updates.sh [FILTER...]
#
# Without FILTERs: every cell the test command leaves out. FILTERs (parts of test names, e.g.
# `a_power_cut`) choose cells among all of them, the test command's too: with
# PORTABLE_SERVICE_TESTS_POWER_CUTS=all, `tests/updates.sh a_power_cut` sweeps 252 and 262.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
if [ $# -eq 0 ]; then set -- --ignored sysupdate::; else set -- --include-ignored "$@"; fi
cargo test --locked -p portable-service-tests --test acceptance -- \
  --skip systemd_239 --skip systemd_245 --skip systemd_249 --test-threads "$(nproc)" "$@"
