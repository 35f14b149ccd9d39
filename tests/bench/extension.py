#!/usr/bin/env python3
"""Benchmark: shipping a change as an extension against rebuilding the whole image.

A base of about 200 MB (tests/bench/closures.nix `small`) and an application of about 1 MB
(`app`). Built by our builder, run by hand on the attrs Nix wrote (as bench.py does), median of
--runs runs, default compression (xz):
  full       portableService with the base's closure and the application: what a change to the
             application costs without extensions;
  extension  portableServiceExtension of the application over the base image: only the store
             paths the base lacks.
Reports wall and CPU seconds and the image size, and the extension's share of each.

  tests/setup.sh && python3 tests/bench/extension.py [--runs 3] [--out FILE]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from bench import BUILDER, REPO, capture, median, nix, timed

UNIT = '(t.writeText "{name}" "[Service]\\\\nExecStart=${{builtins.head closures.app}}/refs\\\\n")'
BASE = f"""t.portableService {{
    pname = "bench"; version = "1";
    units = [ (t.writeText "bench.service" "[Service]\\\\nExecStart=/bin/true\\\\n") ];
    contents = closures.small;
  }}"""
IMAGES = {
    "full": f"""t.portableService {{
        pname = "bench"; version = "2";
        units = [ (t.writeText "bench.service" "[Service]\\\\nExecStart=/bin/true\\\\n")
                  {UNIT.format(name="bench-app.service")} ];
        contents = closures.small ++ closures.app;
      }}""",
    "extension": f"""t.portableServiceExtension {{
        pname = "bench-app"; version = "2"; base = {BASE};
        units = [ {UNIT.format(name="bench-app.service")} ];
        contents = closures.app;
      }}""",
}


def run(attrs, work):
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    attrs_file = work / "attrs.json"
    attrs_file.write_text(json.dumps(dict(attrs, outputs={"out": str(out)})))
    wall, cpu, _ = timed([str(BUILDER), str(attrs_file)])
    (image,) = out.iterdir()
    return dict(wall=wall, cpu=cpu, size=image.stat().st_size)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "target/bench-extension.md"))
    ap.add_argument("--work", default=str(REPO / "target/bench-extension"))
    args = ap.parse_args()
    if not BUILDER.exists():
        sys.exit("target/offline is missing: run tests/setup.sh first")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    nix("build", "--no-link", "-f", "tests/bench/closures.nix", "small", "app")

    medians, closure_mib = {}, {}
    for name, expr in IMAGES.items():
        attrs = capture(expr)
        closure_mib[name] = sum(c.get("narSize", 0) for c in attrs["closure"]) / 2**20
        paths = [c["path"] for c in attrs["closure"]]
        subprocess.run(["tar", "-cf", "/dev/null", *paths], check=True, stderr=subprocess.DEVNULL)
        runs = []
        for i in range(args.runs):
            runs.append(run(attrs, work))
            print(f"  {name} run {i + 1}: {runs[-1]['wall']:.2f}s wall", file=sys.stderr)
        medians[name] = {k: median(runs, k) for k in ["wall", "cpu", "size"]}

    full, ext = medians["full"], medians["extension"]
    version = subprocess.run(["mksquashfs", "-version"], capture_output=True, text=True)
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} cores; {version.stdout.splitlines()[0]}. "
        f"Median of {args.runs} runs. Command: `python3 tests/bench/extension.py --runs {args.runs}`.",
        "",
        "| image | closure MiB | wall s | cpu s | image MiB |",
        "|---|---|---|---|---|",
        f"| full image, rebuilt with the change | {closure_mib['full']:.1f} | {full['wall']:.2f} "
        f"| {full['cpu']:.2f} | {full['size'] / 2**20:.2f} |",
        f"| extension with the change | {closure_mib['extension']:.1f} | {ext['wall']:.2f} "
        f"| {ext['cpu']:.2f} | {ext['size'] / 2**20:.2f} |",
        f"| extension / full | | {ext['wall'] / full['wall']:.1%} | {ext['cpu'] / full['cpu']:.1%} "
        f"| {ext['size'] / full['size']:.1%} |",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
