"""Foundation throughput: scan (files/s), SHA-256 (MB/s, against `cat` of the same files), and
decision commits (p50/p95 latency, decisions/s) on real sample images.

    .venv/bin/python benchmarks/foundation.py [--copies 30]

The scan tree is the bundled sample replicated `--copies` times into a temporary folder (copies
of real files, each with its own bytes). Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from pair_manifest.classes import load_selection
from pair_manifest.images import sha256_file
from pair_manifest.scan import scan_root
from pair_manifest.store import DecisionStore, NewDecision

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "imagenet" / "train"


def make_tree(root: Path, copies: int) -> int:
    count = 0
    for class_dir in sorted(SAMPLE.iterdir()):
        target = root / class_dir.name
        target.mkdir(parents=True)
        for copy in range(copies):
            for image in class_dir.iterdir():
                data = image.read_bytes() + copy.to_bytes(4, "little")  # distinct bytes, still a valid JPEG
                (target / f"{image.stem}_{copy}{image.suffix}").write_bytes(data)
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=30, help="replicas of the sample (675 files each)")
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "train"
        files = make_tree(root, args.copies)
        size = sum(p.stat().st_size for p in root.rglob("*"))
        selection = load_selection()
        scan_root(root, selection, progress=False)  # warm the page cache, like the cat run below
        start = time.perf_counter()
        report = scan_root(root, selection, progress=False)
        seconds = time.perf_counter() - start
        usable = sum(len(c.usable) for c in report.classes.values())
        print(f"scan: {files} files ({size / 1e6:.0f} MB), {usable} usable, {seconds:.2f} s -> {files / seconds:,.0f} files/s "
              f"({os.cpu_count()} processes)")

        paths = sorted(p for p in root.rglob("*") if p.is_file())
        start = time.perf_counter()
        subprocess.run(["xargs", "cat"], input="\n".join(map(str, paths)), text=True, stdout=subprocess.DEVNULL, check=True)
        cat_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for path in paths:
            sha256_file(path)
        hash_seconds = time.perf_counter() - start
        print(f"sha256: {size / 1e6 / hash_seconds:,.0f} MB/s (one process) vs cat {size / 1e6 / cat_seconds:,.0f} MB/s "
              f"-> {100 * cat_seconds / hash_seconds:.0f}% of cat")

        store = DecisionStore(Path(tmp) / "decisions.sqlite", images_root=root)
        wnid = "n03085013"
        names = sorted(os.listdir(root / wnid))
        for name in names:
            store.image_facts(f"{wnid}/{name}")
        latencies = []
        start = time.perf_counter()
        for i in range(args.decisions):
            a, b = names[i % len(names)], names[(i * 7 + 1) % len(names)]
            if a == b:
                continue
            begin = time.perf_counter()
            store.record(NewDecision(f"k{i}", wnid, f"{wnid}/{a}", f"{wnid}/{b}", "reject", "bench"))
            latencies.append(time.perf_counter() - begin)
        total = time.perf_counter() - start
        latencies.sort()
        p95 = latencies[int(0.95 * len(latencies))]
        print(f"decision commit (WAL, synchronous=FULL): p50 {1000 * statistics.median(latencies):.2f} ms, "
              f"p95 {1000 * p95:.2f} ms, {len(latencies) / total:,.0f} decisions/s (one writer)")
        print(f"filesystem: {subprocess.run(['df', '-T', tmp], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
