"""Proposal speed: `pixels` images/s per core on full-resolution JPEGs, the time to score and select
a 1,300-image class, the end-to-end `propose` on a 1,300-file class, and the extrapolation to the
187-class selection (~243 k images) on 2 cores.

    .venv/bin/python benchmarks/proposals_speed.py [--seconds 8] [--class-size 1300]

Inputs are the bundled real photos: the ILSVRC ones of about 500x375 (the full-resolution
ImageNet train files, ~110 kB on average over ImageNet; these average ~80 kB), and, for the
matching, a class of 1,300 *distinct* real photos (every photo of the sample: ImageNet,
Tiny-ImageNet, CIFAR-10), so duplicate removal does not shrink the pool. The end-to-end run uses
a class of 1,300 full-resolution files made by cropping (70-100 % of each side), re-encoding and
shifting the brightness of the real ones. Files are read from the page cache: on a cold disk
the read rate of the disk is a floor. Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import random
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from curation_app.proposals.cache import EmbeddingCache
from curation_app.proposals.embedders import Embedder
from curation_app.proposals.propose import propose, propose_for_class
from curation_app.proposals.worker import Task, init_worker, process
from pair_manifest.images import open_rgb

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SELECTION_IMAGES = 243_000  # 187 classes x ~1,300 ImageNet train images
SELECTION_CLASSES = 187
WNID = "n03085013"

PIXELS_KEY = Embedder().cache_key  # the cache key of the pixels vectors


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    import PIL

    return (f"machine: {model}, {os.cpu_count()} cores, load average {load} (shared machine: figures are "
            f"provisional)\nPython {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}")


def full_resolution_photos() -> list[Path]:
    photos = []
    for path in sorted((SAMPLE / "imagenet" / "train").glob("*/*")):
        with Image.open(path) as image:
            if image.format == "JPEG" and image.width * image.height >= 300 * 250:
                photos.append(path)
    return photos


def per_core_rate(photos: list[Path], seconds: float) -> tuple[float, float, float]:
    """Images/s of the worker's whole per-image job (read, SHA-256, decode, pHash, windows,
    features) in this one process, per second of CPU time and of wall time, and the mean file
    size. CPU time is what one dedicated core would give; wall time is what this shared machine
    gave now."""
    init_worker("unused", PIXELS_KEY, None)
    tasks = [Task(f"{WNID}/{p.name}", str(p), p.stat().st_size, 0, "known") for p in photos]
    for task in tasks:  # warm-up: page cache, first-call costs
        process(task)
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for task in tasks:
            process(task)
        done += len(tasks)
    return (done / (time.process_time() - cpu), done / (time.perf_counter() - start),
            statistics.mean(t.size for t in tasks))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def perturbed_class(photos: list[Path], target: Path, size: int) -> None:
    """`size` distinct full-resolution files: random crops, qualities and brightness of real photos."""
    rng = random.Random(0)
    target.mkdir(parents=True)
    originals = [open_rgb(p) for p in photos]
    for k in range(size):
        image = originals[k % len(originals)]
        w, h = image.size
        fw, fh = rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0)
        left, top = rng.uniform(0, 1 - fw) * w, rng.uniform(0, 1 - fh) * h
        variant = image.crop((int(left), int(top), int(left + fw * w), int(top + fh * h)))
        variant = ImageEnhance.Brightness(variant).enhance(rng.uniform(0.8, 1.2))
        buffer = io.BytesIO()
        variant.save(buffer, "JPEG", quality=rng.randint(80, 95))
        (target / f"{WNID}_{k:05d}.JPEG").write_bytes(buffer.getvalue())


def distinct_class(target: Path, size: int) -> int:
    """Up to `size` distinct real photos of the whole sample in one class folder."""
    target.mkdir(parents=True)
    sources = sorted(p for p in SAMPLE.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png")
                     and "edge_cases" not in p.parts)
    count = 0
    for index, path in enumerate(sources[:size]):
        try:
            open_rgb(path, max_side=32)
        except Exception:  # noqa: BLE001 - skip anything the sample holds that is not a photo
            continue
        shutil.copy(path, target / f"{WNID}_{index:05d}{path.suffix}")
        count += 1
    return count


def csv_for(path: Path) -> str:
    path.write_text(f"wnid\n{WNID}\n")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the per-core measurement")
    parser.add_argument("--class-size", type=int, default=1300, help="images in the synthetic class")
    parser.add_argument("--workers", type=int, default=2, help="processes of the end-to-end run")
    args = parser.parse_args()
    print(machine())

    photos = full_resolution_photos()
    rate, wall_rate, mean_bytes = per_core_rate(photos, args.seconds)
    print(f"\npixels, one core: {rate:.0f} images/s per CPU-second ({1000 / rate:.2f} ms/image; {wall_rate:.0f}/s "
          f"of wall time on this shared machine) on {len(photos)} full-resolution ILSVRC JPEGs (mean "
          f"{mean_bytes / 1e3:.0f} kB): read + SHA-256 + 128 px draft decode + pHash + crop-test windows + "
          f"object/context features")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        found = distinct_class(tmp / "distinct" / WNID, args.class_size)
        propose(tmp / "distinct", tmp / "distinct-project", classes=csv_for(tmp / "c.csv"), workers=args.workers)
        cache = EmbeddingCache.for_project(tmp / "distinct-project")
        data, _ = cache.load(PIXELS_KEY, WNID, cache.class_files(WNID))
        cache.close()
        timings = []
        for _ in range(3):
            start = time.process_time()
            result = propose_for_class(data, "zscore", set(), set(), None)
            timings.append(time.process_time() - start)
        select = min(timings)
        print(f"score + select, one class of {found} distinct real photos: {select:.2f} CPU-s (best of 3; "
              f"{len(result.pairs)} pairs, {result.duplicates} near-duplicate copies dropped)")

        perturbed_class(photos, tmp / "full" / WNID, args.class_size)
        start, cpu = time.perf_counter(), cpu_seconds()
        summary = propose(tmp / "full", tmp / "full-project", classes=csv_for(tmp / "c.csv"), workers=args.workers)
        wall, used = time.perf_counter() - start, cpu_seconds() - cpu
        print(f"propose end to end, one class of {summary.images} full-resolution files, {args.workers} workers: "
              f"{wall:.1f} s wall, {used:.1f} CPU-s in all processes ({1000 * used / summary.images:.2f} CPU-ms/image: "
              f"scan + embed + match + write)")

    cores = 2
    embed = SELECTION_IMAGES / (rate * cores)
    end_to_end = SELECTION_IMAGES * (used / summary.images) / cores
    match = SELECTION_CLASSES * select
    print(f"\nextrapolation to the selection ({SELECTION_IMAGES:,} images, {SELECTION_CLASSES} classes) on {cores} "
          f"dedicated cores:")
    print(f"  embedding alone, {cores} x {rate:.0f} images/s: {embed / 60:.1f} min")
    print(f"  score + select, {SELECTION_CLASSES} classes x {select:.2f} s (main process, after embedding): "
          f"{match / 60:.1f} min")
    print(f"  propose end to end at the measured CPU cost per image: {end_to_end / 60:.1f} min, plus the score + "
          f"select of the other {SELECTION_CLASSES - 1} classes: {(end_to_end + match - select) / 60:.1f} min "
          f"(goal: under 15 min)")


if __name__ == "__main__":
    main()
