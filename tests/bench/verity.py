#!/usr/bin/env python3
"""Benchmark: what `verity = true` costs on the extension benchmark's base of about 200 MB.

The same attrs built twice by our builder, run by hand on the attrs Nix wrote (as bench.py
does), median of --runs runs, default compression (xz): without the hash tree, and with it
(`verity = true`: the tree and root hash written beside the image). Reports wall and CPU
seconds, the image and the hash tree in MiB, and the tree's share of each.

  tests/setup.sh && python3 tests/bench/verity.py [--runs 3] [--out FILE]
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import json
from pathlib import Path

from bench import BUILDER, REPO, capture, median, nix, timed
from extension import BASE


def run(attrs, work):
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    attrs_file = work / "attrs.json"
    attrs_file.write_text(json.dumps(dict(attrs, outputs={"out": str(out)})))
    wall, cpu, _ = timed([str(BUILDER), str(attrs_file)])
    sizes = {p.suffix: p.stat().st_size for p in out.iterdir()}
    return dict(wall=wall, cpu=cpu, raw=sizes[".raw"], tree=sizes.get(".verity", 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "target/bench-verity.md"))
    ap.add_argument("--work", default=str(REPO / "target/bench-verity"))
    args = ap.parse_args()
    if not BUILDER.exists():
        sys.exit("target/offline is missing: run tests/setup.sh first")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    nix("build", "--no-link", "-f", "tests/bench/closures.nix", "small")
    attrs = capture(BASE)
    paths = [c["path"] for c in attrs["closure"]]
    subprocess.run(["tar", "-cf", "/dev/null", *paths], check=True, stderr=subprocess.DEVNULL)

    medians = {}
    for name, verity in [("plain", False), ("verity", True)]:
        runs = []
        for i in range(args.runs):
            runs.append(run(dict(attrs, verity=verity), work))
            print(f"  {name} run {i + 1}: {runs[-1]['wall']:.2f}s wall", file=sys.stderr)
        medians[name] = {k: median(runs, k) for k in ["wall", "cpu", "raw", "tree"]}

    plain, ver = medians["plain"], medians["verity"]
    version = subprocess.run(["mksquashfs", "-version"], capture_output=True, text=True)
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} cores; {version.stdout.splitlines()[0]}. "
        f"Median of {args.runs} runs. Command: `python3 tests/bench/verity.py --runs {args.runs}`.",
        "",
        "| build | wall s | cpu s | image MiB | hash tree MiB |",
        "|---|---|---|---|---|",
        f"| without verity | {plain['wall']:.2f} | {plain['cpu']:.2f} | {plain['raw'] / 2**20:.2f} | |",
        f"| verity = true | {ver['wall']:.2f} | {ver['cpu']:.2f} | {ver['raw'] / 2**20:.2f} "
        f"| {ver['tree'] / 2**20:.3f} |",
        f"| cost of the tree | {(ver['wall'] - plain['wall']) / plain['wall']:+.1%} "
        f"| {(ver['cpu'] - plain['cpu']) / plain['cpu']:+.1%} | | "
        f"{ver['tree'] / ver['raw']:.2%} of the image |",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
