#!/usr/bin/env python3
"""Benchmark: what `verity = true` and `format = "ddi"` cost on the extension benchmark's base of
about 200 MB.

The same attrs built three ways by our builder, run by hand on the attrs Nix wrote (as bench.py
does), median of --runs runs, default compression (xz): without the hash tree, with it
(`verity = true`: the tree and root hash written beside the image), and as a Discoverable Disk
Image (`format = "ddi"`: the file system and the tree as partitions of one file). Reports wall
and CPU seconds, the image and the hash tree in MiB, and the tree's share of each.

  tests/setup.sh && python3 tests/bench/verity.py [--runs 3] [--out FILE]
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import json
import re
from pathlib import Path

from bench import BUILDER, REPO, capture, median, nix, timed
from extension import BASE


def run(attrs, work):
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    attrs_file = work / "attrs.json"
    attrs_file.write_text(json.dumps(dict(attrs, outputs={"out": str(out)})))
    wall, cpu, log = timed([str(BUILDER), str(attrs_file)])
    sizes = {p.suffix: p.stat().st_size for p in out.iterdir()}
    # the builder's own time for the tree (and, for a DDI, the table), after mksquashfs
    step = re.search(r"made (?:the hash tree|a disk image).* in ([0-9.]+) s", log)
    return dict(
        wall=wall,
        cpu=cpu,
        raw=sizes[".raw"],
        tree=sizes.get(".verity", 0),
        step=float(step.group(1)) if step else 0.0,
    )


def ddi_parts(raw):
    """The root and root-verity partitions' sizes of a DDI, from its GPT entries."""
    with open(raw, "rb") as f:
        f.seek(1024)
        entries = f.read(128 * 128)
    sizes = []
    for i in range(2):
        e = entries[i * 128 : (i + 1) * 128]
        first, last = int.from_bytes(e[32:40], "little"), int.from_bytes(e[40:48], "little")
        sizes.append((last - first + 1) * 512)
    return sizes


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
    builds = [
        ("plain", dict(verity=False)),
        ("verity", dict(verity=True)),
        ("ddi", dict(format="ddi", system="x86_64-linux")),
    ]
    for name, extra in builds:
        runs = []
        for i in range(args.runs):
            runs.append(run(dict(attrs, **extra), work))
            if name == "ddi":
                fs, tree = ddi_parts(work / "out" / next(p.name for p in (work / "out").iterdir() if p.suffix == ".raw"))
                runs[-1].update(fs=fs, tree=tree)
            print(f"  {name} run {i + 1}: {runs[-1]['wall']:.2f}s wall", file=sys.stderr)
        keys = ["wall", "cpu", "raw", "tree", "step"] + (["fs"] if name == "ddi" else [])
        medians[name] = {k: median(runs, k) for k in keys}

    plain, ver, ddi = medians["plain"], medians["verity"], medians["ddi"]
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
        f"| format = \"ddi\" | {ddi['wall']:.2f} | {ddi['cpu']:.2f} | {ddi['raw'] / 2**20:.2f} "
        f"| {ddi['tree'] / 2**20:.3f} |",
        f"| DDI against verity = true | {(ddi['wall'] - ver['wall']) / ver['wall']:+.1%} "
        f"| {(ddi['cpu'] - ver['cpu']) / ver['cpu']:+.1%} "
        f"| {(ddi['raw'] - ver['raw'] - ver['tree']) / 2**20:+.3f} (one file against two) | |",
        "",
        f"The builder's own step after mksquashfs (medians): the tree beside the image "
        f"{ver['step']:.2f} s, the DDI's tree and table {ddi['step']:.2f} s.",
        "",
        f"The DDI is {ddi['raw']} bytes: its file system {ddi['fs']} bytes (the naked image: "
        f"{ver['raw']}), its tree {ddi['tree']} (beside the naked image: {ver['tree']}), and "
        f"{ddi['raw'] - ddi['fs'] - ddi['tree']} bytes of table, alignment and room for the signature.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
