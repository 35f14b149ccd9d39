#!/usr/bin/env bash
# Fuzzes, coverage-guided (cargo-fuzz, libFuzzer), what `check` and `sign` read from files anyone
# can hand them (the partition table, the squashfs image and its unit and release files, the
# hash tree, the signature) and the builder's reading of the attrs file Nix writes.
#
#   tests/fuzz.sh [SECONDS] [TARGET...]    each target for SECONDS (default 60), all by default
#
# Seeds: our own images, trees and signatures and the hostile inputs of issue 28, written by
# crates/portable-service-tools/fuzz/examples/seeds.rs into target/fuzz/corpus/TARGET, where the
# corpus grows from run to run. A crash, an input over the memory bound or one that takes over
# 20 s (under the sanitizer) is kept in crates/portable-service-tools/fuzz/artifacts/TARGET/
# and the run fails: make it a regression test beside the reader's others. Not part of
# tests/run.sh (its time is its own). Give it the CPU: a starved run reports timeouts that are
# none (check each with the release build before taking it for a bug).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gpt_table image hash_tree signature builder_attrs)
fuzz_dir=crates/portable-service-tools/fuzz

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# libFuzzer's instrumentation wants a nightly compiler; the stable one does when told to
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi

corpus=$root/target/fuzz/corpus
# seeds of this run's own, so that two runs (one a core) can start together
mkdir -p "$root/target/fuzz"
seeds=$(mktemp -d "$root/target/fuzz/seeds.XXXXXX")
trap 'rm -rf "$seeds"' EXIT
cargo "${toolchain[@]}" run --quiet --manifest-path "$fuzz_dir/Cargo.toml" --example seeds -- "$seeds"
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t"
  cp -n "$seeds/$t/"* "$corpus/$t/" 2>/dev/null || true
done

for t in "${targets[@]}"; do
  echo "fuzz: $t for ${seconds} s"
  # 64 MiB: the most `check` may allocate at once on any input (issue 28's bound)
  cargo "${toolchain[@]}" fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus/$t" -- \
    -max_total_time="$seconds" -max_len=1200000 -malloc_limit_mb=64 -rss_limit_mb=2048 \
    -timeout=20 -detect_leaks=0 -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+ *DONE|stat::|==|SUMMARY|artifact_prefix|Test unit|INFO: Seed)' || true
  # crash-, oom- and timeout- inputs fail the run; slow-unit- ones are only reported
  found=$(ls "$fuzz_dir/artifacts/$t/" 2>/dev/null | grep -E '^(crash|oom|timeout)-' || true)
  if [ -n "$found" ]; then
    echo "fuzz: $t found, in $fuzz_dir/artifacts/$t/:" $found >&2
    exit 1
  fi
done
