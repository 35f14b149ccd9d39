#!/usr/bin/env python3
"""Benchmark: our builder against the nixpkgs way and against mksquashfs alone.

For each generated closure (tests/bench/closures.nix) and compression, on the same closure and
options, median of --runs runs:
  ours     portable-service-builder on the attrs Nix wrote for portableService (tar stream into
           mksquashfs -tar, nothing staged), run by hand so that Nix's own overhead is not counted;
  nixpkgs  the nixpkgs function's way: `cp -a` of every closure path into a staging root, then
           mksquashfs with the nixpkgs flags;
  floor    mksquashfs alone over the already-staged root, with our options.
Reports wall and CPU seconds, the builder's peak memory, the extra disk each way needs and the
image size, and writes the table as Markdown.

  tests/setup.sh && python3 tests/bench/bench.py [--runs 3] [--cases small,large,...] [--out FILE]
Needs root (Nix's local store) and what tests/setup.sh installs.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "target/offline/builder/bin/portable-service-builder"
NIX_CONFIG = (REPO / "tests/nix/nix.conf").read_text()
CASES = ["small", "large", "deep", "files-10k", "files-50k", "files-100k"]
COMPRESSIONS = {"xz": "xz -Xdict-size 100%", "zstd-1": "zstd -Xcompression-level 1"}
# The nixpkgs function's mksquashfs flags (nixpkgs pkgs/build-support/portable/portable-service.nix).
NIXPKGS_FLAGS = ["-quiet", "-noappend", "-exit-on-error", "-keep-as-directory", "-all-root",
                 "-root-mode", "755", "-b", "1M"]
# Our builder's flags other than -tar (crates/portable-service-builder/src/mksquashfs.rs).
OUR_FLAGS = ["-noappend", "-quiet", "-no-progress", "-exit-on-error", "-all-root", "-root-mode",
             "0755", "-no-xattrs", "-mkfs-time", "1", "-all-time", "1", "-no-exports", "-b", "1M"]


def nix(*args):
    env = dict(os.environ, NIX_CONFIG=NIX_CONFIG)
    return subprocess.run(["nix", *args], env=env, check=True, capture_output=True, text=True,
                          cwd=REPO).stdout


def capture(image_expr):
    """The attrs file Nix writes for the image `image_expr` (Nix, with `t` the offline world and
    `closures` tests/bench/closures.nix), copied out by a busybox builder in place of ours."""
    expr = f"""
      let
        t = import {REPO}/tests/nix/offline.nix {{ }};
        closures = import {REPO}/tests/bench/closures.nix;
      in import {REPO}/tests/nix/capture-attrs.nix {{ image = {image_expr}; }}
    """
    out = json.loads(nix("build", "--no-link", "--json", "--impure", "--expr", expr))
    return json.loads(Path(out[0]["outputs"]["out"]).read_text())


def attrs_for(case, compression):
    """The attrs of an image of this closure."""
    return capture(f"""t.portableService {{
        pname = "bench"; version = "1";
        units = [ (t.writeText "bench.service" "[Service]\\nExecStart=/bin/true\\n") ];
        contents = closures.{json.dumps(case)};
        squash-compression = {json.dumps(compression)};
      }}""")


class Timer:
    """Wall seconds, and CPU seconds of the child processes, of what runs inside it."""

    def __enter__(self):
        self.start, self.usage = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc):
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.wall = time.monotonic() - self.start
        self.cpu = (after.ru_utime - self.usage.ru_utime) + (after.ru_stime - self.usage.ru_stime)


def timed(cmd):
    """Runs cmd; returns (wall seconds, CPU seconds of it and its children, stderr)."""
    with Timer() as t:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{proc.stdout}\n{proc.stderr}")
    return t.wall, t.cpu, proc.stderr


class DiskWatch:
    """Samples the free space of the work directory's file system while a way runs: the peak
    disk it took, less its image, is the extra disk it needed."""

    def __init__(self, path):
        self.path, self.low, self.done = path, None, threading.Event()

    def __enter__(self):
        self.start = shutil.disk_usage(self.path).free
        self.low = self.start
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while not self.done.wait(0.02):
            self.low = min(self.low, shutil.disk_usage(self.path).free)

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.low = min(self.low, shutil.disk_usage(self.path).free)

    def extra(self, image):
        return max(0, self.start - self.low - image.stat().st_size)


def run_ours(attrs, work):
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    attrs = dict(attrs, outputs={"out": str(out)})
    attrs_file = work / "attrs.json"
    attrs_file.write_text(json.dumps(attrs))
    with DiskWatch(work) as disk:
        wall, cpu, log = timed([str(BUILDER), str(attrs_file)])
    peak = int(re.search(r"builder peak memory (\d+) KiB", log).group(1))
    image = out / "bench_1.raw"
    return dict(wall=wall, cpu=cpu, mem_kib=peak, extra_disk=disk.extra(image),
                size=image.stat().st_size)


def stage(attrs, root):
    """The nixpkgs function's staging, into an empty `root`: a scaffold and a `cp -a` of every
    closure path."""
    for d in ["nix/store", "etc/systemd/system", "dev", "proc", "sys", "run", "tmp",
              "var/tmp", "var/lib", "var/cache", "var/log"]:
        (root / d).mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=nixos\nPORTABLE_ID=bench\n")
    for f in ["etc/resolv.conf", "etc/machine-id"]:
        (root / f).write_text("")
    for unit in attrs["units"]:
        shutil.copy(unit["file"], root / "etc/systemd/system" / unit["name"])
    paths = [c["path"] for c in attrs["closure"]]
    subprocess.run(["cp", "-a", *paths, str(root / "nix/store")], check=True)


def run_nixpkgs(attrs, work):
    root, image = work / "staged", work / "nixpkgs.raw"
    if image.exists():
        image.unlink()
    shutil.rmtree(root, ignore_errors=True)
    with DiskWatch(work) as disk, Timer() as t:
        stage(attrs, root)
        comp = attrs["squash-compression"].split()
        entries = sorted(p.name for p in root.iterdir() if p.name != "nix")
        subprocess.run(["mksquashfs", "nix", *entries, str(image), *NIXPKGS_FLAGS, "-comp", *comp],
                       cwd=root, check=True, capture_output=True,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="0"))
    wall, cpu = t.wall, t.cpu
    return dict(wall=wall, cpu=cpu, mem_kib=None, extra_disk=disk.extra(image),
                size=image.stat().st_size)


def run_floor(attrs, work):
    root, image = work / "staged", work / "floor.raw"
    if image.exists():
        image.unlink()
    comp = attrs["squash-compression"].split()
    with DiskWatch(work) as disk:
        wall, cpu, _ = timed(["mksquashfs", str(root), str(image), *OUR_FLAGS, "-comp", *comp])
    return dict(wall=wall, cpu=cpu, mem_kib=None, extra_disk=disk.extra(image),
                size=image.stat().st_size)


def median(runs, key):
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--compressions", default=",".join(COMPRESSIONS))
    ap.add_argument("--out", default=str(REPO / "target/bench.md"))
    ap.add_argument("--work", default=str(REPO / "target/bench"))
    args = ap.parse_args()
    if not BUILDER.exists():
        sys.exit("target/offline is missing: run tests/setup.sh first")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    rows = []
    for case in args.cases.split(","):
        print(f"building closure {case}", file=sys.stderr)
        nix("build", "--no-link", "-f", "tests/bench/closures.nix", case)
        for cname in args.compressions.split(","):
            attrs = attrs_for(case, COMPRESSIONS[cname])
            paths = [c["path"] for c in attrs["closure"]]
            # warm the page cache, so that every way reads the closure from memory
            subprocess.run(["tar", "-cf", "/dev/null", *paths], check=True, stderr=subprocess.DEVNULL)
            results = {"ours": [], "nixpkgs": [], "floor": []}
            for i in range(args.runs):
                for name, fn in [("nixpkgs", run_nixpkgs), ("floor", run_floor), ("ours", run_ours)]:
                    r = fn(attrs, work)
                    results[name].append(r)
                    print(f"  {case} {cname} run {i + 1} {name}: {r['wall']:.2f}s wall "
                          f"{r['cpu']:.2f}s cpu", file=sys.stderr)
            files = sum(1 for p in paths for _ in Path(p).rglob("*")) + len(paths)
            nbytes = sum(c.get("narSize", 0) for c in attrs["closure"])
            m = {k: {key: median(v, key) for key in ["wall", "cpu", "mem_kib", "extra_disk", "size"]}
                 for k, v in results.items()}
            rows.append((case, cname, len(paths), files, nbytes, m))
            shutil.rmtree(work / "staged", ignore_errors=True)

    write_table(rows, args)


def write_table(rows, args):
    mib = lambda b: f"{b / 2**20:.1f}"
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"kernel {platform.release()}; {subprocess.run(['mksquashfs', '-version'], capture_output=True, text=True).stdout.splitlines()[0]}; "
        f"{subprocess.run(['nix', '--version'], capture_output=True, text=True).stdout.strip()}.",
        f"Median of {args.runs} runs. Command: `python3 tests/bench/bench.py --runs {args.runs}"
        f" --cases {args.cases} --compressions {args.compressions}`.",
        "",
        "| closure | comp | paths | files | MiB | ours wall s | ours cpu s | nixpkgs wall s | nixpkgs cpu s "
        "| floor wall s | floor cpu s | ours/nixpkgs | ours/floor | builder peak MiB | extra disk MiB ours / nixpkgs "
        "| image MiB ours / nixpkgs |",
        "|" + "---|" * 16,
    ]
    for case, cname, npaths, files, nbytes, m in rows:
        o, n, f = m["ours"], m["nixpkgs"], m["floor"]
        lines.append(
            f"| {case} | {cname} | {npaths} | {files} | {mib(nbytes)} | {o['wall']:.2f} | {o['cpu']:.2f} "
            f"| {n['wall']:.2f} | {n['cpu']:.2f} | {f['wall']:.2f} | {f['cpu']:.2f} "
            f"| {o['wall'] / n['wall']:.2f} | {o['wall'] / f['wall']:.2f} | {o['mem_kib'] / 1024:.1f} "
            f"| {mib(o['extra_disk'])} / {mib(n['extra_disk'])} | {mib(o['size'])} / {mib(n['size'])} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
