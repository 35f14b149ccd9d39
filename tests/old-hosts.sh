#!/usr/bin/env bash
# Runs the acceptance scenarios on the systemd versions no Debian on the mirror ships, built
# from systemd's own sources: v239 (RHEL 8's version), v245.9 (Ubuntu 20.04's) and v249.17
# (Ubuntu 22.04's, SLES 15's), each installed over Debian 11's systemd in a guest
# (tests/src/old_systemd.rs). Not part of tests/run.sh: the builds take their own time.
#
#   tests/old-hosts.sh [SOURCES] [-- TEST ARGS...]
#
# SOURCES: a clone of https://github.com/systemd/systemd-stable (bare or not; it has the tags).
# Without it, one is cloned into target/systemd-stable where the internet is reached. Each
# version is built once and cached in /var/cache/portable-service-tests/vm with the guest
# disks. TEST ARGS go to the test binary, e.g. `-- portabled::` for one file's scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
sources=${1:-}
[ $# -eq 0 ] || shift
[ "${1:-}" != -- ] || shift
if [ -z "$sources" ] || [ "$sources" = -- ]; then
  sources=$PWD/target/systemd-stable
  [ -e "$sources/HEAD" ] || [ -e "$sources/.git" ] ||
    git clone --bare https://github.com/systemd/systemd-stable.git "$sources"
fi
sources=$(cd "$sources" && pwd)
git -C "$sources" rev-parse --verify --quiet 'v249.17^{commit}' >/dev/null || {
  echo "old-hosts.sh: $sources has no tag v249.17: give a clone of systemd/systemd-stable" >&2
  exit 2
}
tests/setup.sh
export PORTABLE_SERVICE_SYSTEMD_SOURCES=$sources
cargo test --locked -p portable-service-tests --test acceptance -- --ignored \
  --test-threads "$(nproc)" "$@"
