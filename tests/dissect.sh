#!/usr/bin/env bash
# The long run of the dissect rules against systemd-dissect (BENCHMARKS.md has its numbers):
# COUNT generated disks (default 10000) against this machine's systemd-dissect (252 on Debian
# 12), then a sample of GUEST (default 200) against the newest guest's (262). The test command
# runs 200 and none. Needs root and loop devices, as tests/run.sh does.
#
#   tests/dissect.sh [COUNT [GUEST]]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
guest=${2:-200}
tests/setup.sh
start=$(date +%s)
PORTABLE_SERVICE_TESTS_DISSECT=$count cargo test --locked -p portable-service-tests --test dissect \
  -- --nocapture
echo "dissect.sh: $count images against this machine's systemd-dissect in $(($(date +%s) - start)) s"
start=$(date +%s)
PORTABLE_SERVICE_TESTS_DISSECT_GUEST=$guest cargo test --locked -p portable-service-tests \
  --test acceptance -- --ignored --exact --nocapture \
  ddi::the_dissect_rules_agree_with_the_newest_systemd_dissect
echo "dissect.sh: $guest images in the newest guest in $(($(date +%s) - start)) s"
