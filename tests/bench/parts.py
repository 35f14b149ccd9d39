#!/usr/bin/env python3
"""Benchmark: an image built from `parts` against the same image built whole, and both against
mksquashfs alone (the floor), on a realistic closure (issue 41).

The closure: this machine's Python 3.11 standard library and dist-packages, its locales
(/usr/share/locale, /usr/share/i18n), its time zones and Perl's libraries, each added to the store
as a path of its own (`nix-store --add-fixed --recursive`: about 310 MB), and a small service
package that references them all and changes at every build (its version). The image's one unit
runs the service. With `parts`, each of the six large paths is a part.

Measured, each the median of --runs, in one run of the script:
  floor          mksquashfs alone over the staged closure, with the builder's options;
  whole first    `nix build` of the image without parts, from nothing but the closure;
  whole rebuild  the same after the service changed (nothing to reuse: the same work again);
  parts first    `nix build` of the image with parts, its parts deleted from the store first;
  parts rebuild  the same after the service changed, the parts already built.
and the image sizes with and without parts, the parts' count and store space.

  tests/setup.sh && python3 tests/bench/parts.py [--runs 3] [--out FILE]
Needs root (Nix's local store) and what tests/setup.sh installs.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NIX_CONFIG = (REPO / "tests/nix/nix.conf").read_text()
SOURCES = ["/usr/lib/python3.11", "/usr/lib/python3/dist-packages", "/usr/share/locale",
           "/usr/share/i18n", "/usr/share/zoneinfo", "/usr/lib/x86_64-linux-gnu/perl"]
COMPRESSION = ["xz", "-Xdict-size", "100%"]
FLAGS = ["-noappend", "-quiet", "-no-progress", "-all-root", "-root-mode", "0755", "-no-xattrs",
         "-no-exports", "-mkfs-time", "1", "-all-time", "1", "-b", "1M", "-comp", *COMPRESSION]


def run(*args, **kw):
    env = dict(os.environ, NIX_CONFIG=NIX_CONFIG)
    return subprocess.run(args, env=env, check=True, capture_output=True, text=True, cwd=REPO,
                          **kw).stdout


def add_sources():
    return [run("nix-store", "--add-fixed", "--recursive", "sha256", s).strip() for s in SOURCES]


def expr(deps, version, parts):
    paths = " ".join(f'(builtins.storePath "{d}")' for d in deps)
    return f"""
      let
        t = import {REPO}/tests/nix/offline.nix {{ }};
        deps = [ {paths} ];
        service = t.runBusyboxWith "svc-{version}" {{ }} ''
          busybox mkdir -p $out/bin
          echo '#!${{t.busybox}}/bin/sh' > $out/bin/svc
          echo 'echo {version} ${{toString deps}}' >> $out/bin/svc
          busybox chmod +x $out/bin/svc
        '';
      in t.portableService {{
        pname = "svc";
        version = "{version}";
        units = [ (t.writeText "svc.service" "[Service]\\nExecStart=${{service}}/bin/svc\\n") ];
        parts = {"deps" if parts else "[ ]"};
      }}
    """


def build(deps, version, parts):
    e = expr(deps, version, parts)
    started = time.monotonic()
    out = json.loads(run("nix", "build", "--no-link", "--json", "--impure", "--expr", e))
    took = time.monotonic() - started
    return took, Path(out[0]["outputs"]["out"])


def part_outputs(deps, version):
    e = expr(deps, version, True)
    drvs = json.loads(run("nix", "eval", "--impure", "--json", "--expr",
                          f"map (p: p.outPath) ({e}).parts"))
    return drvs


def delete(paths):
    existing = [p for p in paths if Path(p).exists()]
    if existing:
        run("nix-store", "--delete", *existing)


def floor(deps, work):
    stage = Path(work) / "stage"
    store = stage / "usr/nix/store"
    store.mkdir(parents=True)
    for d in deps:
        subprocess.run(["cp", "-a", d, str(store)], check=True)
    out = Path(work) / "floor.raw"
    started = time.monotonic()
    subprocess.run(["mksquashfs", str(stage), str(out), *FLAGS], check=True, capture_output=True)
    took = time.monotonic() - started
    size = out.stat().st_size
    out.unlink()
    shutil.rmtree(stage, ignore_errors=True)
    return took, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    deps = add_sources()
    stamp = str(int(time.time()))
    times = {k: [] for k in ["floor", "whole first", "whole rebuild", "parts first",
                             "parts rebuild"]}
    sizes = {}
    n = 0

    def version():
        nonlocal n
        n += 1
        return f"{stamp}.{n}"

    with tempfile.TemporaryDirectory(dir=REPO / "target") as work:
        for _ in range(args.runs):
            took, sizes["floor"] = floor(deps, work)
            times["floor"].append(took)
            # whole: the first build of a version is all the work, and so is the rebuild
            took, out = build(deps, version(), False)
            times["whole first"].append(took)
            took, out = build(deps, version(), False)
            times["whole rebuild"].append(took)
            sizes["whole"] = next(out.glob("*.raw")).stat().st_size
            v = version()
            delete(part_outputs(deps, v))
            took, out = build(deps, v, True)
            times["parts first"].append(took)
            took, out = build(deps, version(), True)
            times["parts rebuild"].append(took)
            sizes["parts"] = next(out.glob("*.raw")).stat().st_size
        parts = part_outputs(deps, v)
        part_bytes = sum(sum(f.stat().st_size for f in Path(p).iterdir()) for p in parts)
    med = {k: statistics.median(v) for k, v in times.items()}
    mib = sum(int(run("du", "-sb", d).split()[0]) for d in deps) / 2**20
    lines = [
        f"Closure: {len(deps)} large store paths ({mib:.0f} MiB) and a service, xz "
        f"(`{' '.join(COMPRESSION)}`), block size 1M. Median of {args.runs} runs.",
        "",
        "| way | wall s | / floor |",
        "|---|---|---|",
    ]
    for k, v in med.items():
        lines.append(f"| {k} | {v:.2f} | {v / med['floor']:.2f} |")
    lines += [
        "",
        f"Image: whole {sizes['whole']} bytes, from parts {sizes['parts']} bytes "
        f"({(sizes['parts'] / sizes['whole'] - 1) * 100:+.2f}%); mksquashfs alone "
        f"{sizes['floor']} bytes. Parts: {len(parts)}, {part_bytes / 2**20:.1f} MiB in the store.",
        f"All runs (s): {json.dumps({k: [round(x, 2) for x in v] for k, v in times.items()})}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
