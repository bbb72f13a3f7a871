"""Foundation throughput: scan (files/s), SHA-256 (MB/s, against `cat` of the same files),
decision commits (p50/p95 latency, decisions/s) on real sample images, and `manifest import` and
`manifest validate --images` at the size of the full release.

    .venv/bin/python benchmarks/foundation.py [--copies 30] [--release-classes 187] [--tree DIR]

The scan tree is the bundled sample replicated `--copies` times into a temporary folder (copies
of real files, each with its own bytes). The release tree holds, for each of `--release-classes`
classes (187: the paper's 29,359 pairs), the 314 photos its 157 pairs name: the bundled sample's
full-resolution ILSVRC photos (about 500x375, as ImageNet's), each copy given a JPEG comment so
it has its own bytes, consecutive photos paired. The rest of a 1,300-photo class folder is left
out: an import reads only the files its CSV names. `--tree DIR` keeps that tree (and reuses it on
the next run). Import and validation run as the installed command in a fresh process, page cache
warm; the figures are wall seconds, rows/s and CPU seconds of the process tree. Figures are
printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pair_manifest.classes import load_selection
from pair_manifest.images import sha256_file
from pair_manifest.protocol import PAIRS_PER_CLASS
from pair_manifest.scan import scan_root
from pair_manifest.store import DecisionStore, NewDecision

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "imagenet" / "train"
CLI = Path(sys.executable).parent / "semantic-pairs"


def with_comment(data: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: other bytes, identical pixels."""
    payload = text.encode()
    return data[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def make_release_tree(root: Path, classes: int) -> tuple[Path, Path, int]:
    """(images root, pairs CSV, bytes of the photos): 157 pairs of distinct photos per class."""
    from build_throughput import full_resolution_photos  # a sibling script: benchmarks/ is on sys.path

    images, csv_path = root / "images", root / "pairs.csv"
    photos = full_resolution_photos()
    wnids = [c.wnid for c in load_selection().classes][:classes]
    if csv_path.is_file():  # kept from an earlier run
        return images, csv_path, sum(p.stat().st_size for p in images.rglob("*.JPEG"))
    rows, size = ["wnid,file_a,file_b"], 0
    for c, wnid in enumerate(wnids):
        (images / wnid).mkdir(parents=True, exist_ok=True)
        names = []
        for i in range(2 * PAIRS_PER_CLASS):
            data = with_comment(photos[(i + c) % len(photos)], f"benchmark {wnid} {i}")
            name = f"{wnid}/{wnid}_{i:05d}.JPEG"
            (images / name).write_bytes(data)
            names.append(name)
            size += len(data)
        rows += [f"{wnid},{a},{b}" for a, b in zip(names[0::2], names[1::2])]
    csv_path.write_text("\n".join(rows) + "\n")
    return images, csv_path, size


def timed_command(*args) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (the process and its children) and output of one CLI run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args[:2]))} failed:\n{result.stderr[-2000:]}")
    return wall, cpu, result.stdout.strip()


def release_figures(work: Path, classes: int, repeat: int) -> None:
    images, csv_path, size = make_release_tree(work, classes)
    pairs = sum(1 for _ in csv_path.open()) - 1
    subprocess.run(["xargs", "-0", "cat"], input="\0".join(map(str, images.rglob("*.JPEG"))), text=True,
                   stdout=subprocess.DEVNULL, check=True)  # page cache warm, as a second run finds it
    print(f"release tree: {classes} classes, {pairs:,} pairs, {2 * pairs:,} photos ({size / 1e9:.2f} GB, "
          f"{size / 2 / pairs / 1e3:.0f} KB each)")
    runs = []
    for n in range(repeat):
        out = work / f"manifest{n}"
        shutil.rmtree(out, ignore_errors=True)
        runs.append(timed_command("manifest", "import", csv_path, "--images", images, "--out", out))
    wall, cpu, _ = min(runs)
    print(f"manifest import: best of {repeat} {wall:.1f} s wall (median {statistics.median(r[0] for r in runs):.1f}), "
          f"{pairs / wall:,.0f} rows/s, {cpu:.1f} CPU-s; load average {os.getloadavg()[0]:.1f}")
    checks = [timed_command("manifest", "validate", work / "manifest0", "--images", images) for _ in range(repeat)]
    wall, cpu, _ = min(checks)
    print(f"manifest validate --images: best of {repeat} {wall:.1f} s wall, {cpu:.1f} CPU-s")


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
    parser.add_argument("--release-classes", type=int, default=187,
                        help="classes of the import/validate tree (187: the full release; 0 skips it)")
    parser.add_argument("--tree", metavar="DIR", help="keep the release tree here (reused when present)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of import and validate (best and median)")
    parser.add_argument("--release-only", action="store_true", help="only the import/validate figures")
    args = parser.parse_args()
    if args.release_only:
        print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        with tempfile.TemporaryDirectory() as tmp:
            release_figures(Path(args.tree or tmp), args.release_classes, args.repeat)
        return
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
        if args.release_classes:
            shutil.rmtree(root)
            release_figures(Path(args.tree) if args.tree else Path(tmp) / "release", args.release_classes, args.repeat)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
