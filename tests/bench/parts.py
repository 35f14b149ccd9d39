#!/usr/bin/env python3
"""Benchmark: images built from `parts` against the same image built whole, and both against
mksquashfs alone (the floor), on two closures (issue 41).

  realistic   this machine's Python 3.11 standard library and dist-packages, its locales
              (/usr/share/locale, /usr/share/i18n), its time zones and Perl's libraries, each
              added to the store as a path of its own (`nix-store --add-fixed --recursive`:
              about 290 MiB); named parts: one per path.
  many-small  1,000 generated store paths of 10 files of 8 KiB (tests/bench/closures.nix);
              named parts: one per path (1,000 derivations: what a part per store path costs).
Each gets a small service package that references every path and changes at every build (its
version), and a unit that runs it.

For each closure, in one run of the script, medians of --runs:
  floor          mksquashfs alone over the staged closure, with the builder's options;
  <way> first    `nix build` of the image, from nothing but the closure (the way's parts
                 deleted from the store first);
  <way> rebuild  the same after the service changed, its parts already built;
for the ways whole (`parts = [ ]`), named (`parts` = the paths) and auto (`parts = "auto"`),
and the image sizes, the parts' count and their store space.

  tests/setup.sh && python3 tests/bench/parts.py [--runs 3] [--cases realistic,many-small] [--out FILE]
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


def expr(case, deps, version, parts):
    if case == "realistic":
        paths = " ".join(f'(builtins.storePath "{d}")' for d in deps)
        deps_nix = f"[ {paths} ]"
    else:
        deps_nix = f"(import {REPO}/tests/bench/closures.nix).{case}"
    parts_nix = {"whole": "[ ]", "named": "deps", "auto": '"auto"'}[parts]
    return f"""
      let
        t = import {REPO}/tests/nix/offline.nix {{ }};
        deps = {deps_nix};
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
        parts = {parts_nix};
      }}
    """


def build(case, deps, version, parts):
    e = expr(case, deps, version, parts)
    started = time.monotonic()
    out = json.loads(run("nix", "build", "--no-link", "--json", "--impure", "--expr", e))
    took = time.monotonic() - started
    return took, Path(out[0]["outputs"]["out"])


def part_outputs(case, deps, version, parts):
    e = expr(case, deps, version, parts)
    return json.loads(run("nix", "eval", "--impure", "--json", "--expr",
                          f"map (p: p.outPath) ({e}).parts"))


def delete(paths):
    existing = [p for p in paths if Path(p).exists()]
    if existing:
        run("nix-store", "--delete", *existing)


def closure_paths(case):
    if case == "realistic":
        return [run("nix-store", "--add-fixed", "--recursive", "sha256", s).strip()
                for s in SOURCES]
    out = json.loads(run("nix", "build", "--no-link", "--json", "--impure", "--expr",
                         f"(import {REPO}/tests/bench/closures.nix).{case}"))
    return [o["outputs"]["out"] for o in out]


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


def bench(case, runs):
    deps = closure_paths(case)
    stamp = f"{int(time.time())}"
    times, sizes, counts = {"floor": []}, {}, {}
    n = 0
    with tempfile.TemporaryDirectory(dir=REPO / "target") as work:
        for _ in range(runs):
            took, sizes["floor"] = floor(deps, work)
            times["floor"].append(took)
            for way in ["whole", "named", "auto"]:
                n += 1
                first = f"{stamp}.{n}"
                parts = part_outputs(case, deps, first, way)
                delete(parts)
                took, _ = build(case, deps, first, way)
                times.setdefault(f"{way} first", []).append(took)
                n += 1
                took, out = build(case, deps, f"{stamp}.{n}", way)
                times.setdefault(f"{way} rebuild", []).append(took)
                sizes[way] = next(out.glob("*.raw")).stat().st_size
                parts = part_outputs(case, deps, f"{stamp}.{n}", way)
                counts[way] = (len(parts), sum(
                    sum(f.stat().st_size for f in Path(p).iterdir()) for p in parts))
    med = {k: statistics.median(v) for k, v in times.items()}
    mib = sum(int(run("du", "-sb", d).split()[0]) for d in deps) / 2**20
    lines = [
        f"**{case}**: {len(deps)} store paths ({mib:.0f} MiB) and a service; xz "
        f"(`{' '.join(COMPRESSION)}`), block size 1M; median of {runs} runs.",
        "",
        "| way | parts | parts' store MiB | first build s | / floor | rebuild s | / floor | image bytes | vs whole |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| floor (mksquashfs alone) | | | {med['floor']:.2f} | 1.00 | | | {sizes['floor']} | |",
    ]
    for way in ["whole", "named", "auto"]:
        f, r = med[f"{way} first"], med[f"{way} rebuild"]
        count, size = counts[way]
        lines.append(
            f"| {way} | {count} | {size / 2**20:.1f} | {f:.2f} | {f / med['floor']:.2f} | "
            f"{r:.2f} | {r / med['floor']:.2f} | {sizes[way]} | "
            f"{(sizes[way] / sizes['whole'] - 1) * 100:+.2f}% |")
    lines += ["", "All runs (s): " + json.dumps(
        {k: [round(x, 2) for x in v] for k, v in times.items()}), ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", default="realistic,many-small")
    ap.add_argument("--out")
    args = ap.parse_args()
    text = "\n".join(bench(case, args.runs) for case in args.cases.split(","))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
