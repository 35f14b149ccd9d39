#!/usr/bin/env bash
# The whole differential corpus: `check --systemd V` against the guests' portabled and systemctl
# on N generated images (default 250; the acceptance suite runs 40 of the same seed) and on the
# extension release cases, on every measured systemd. Prints each version's counts; the
# disagreements, if any, are in the test's failure and in target/differential/.
#   tests/differential.sh [N] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
export PORTABLE_SERVICE_CORPUS="${1:-250}"
[ -z "${2:-}" ] || export PORTABLE_SERVICE_CORPUS_SEED="$2"
rm -rf target/differential
status=0
time cargo test --locked --test acceptance -- differential:: --test-threads 2 || status=$?
grep -h '^differential corpus' target/differential/*.txt
exit "$status"
