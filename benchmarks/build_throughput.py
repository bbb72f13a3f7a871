"""Build throughput: MB/s of image bytes written by `semantic-pairs build`, against `cat` of the
same files and against the straightforward `datasets` route, on a >= 1 GB class tree.

The tree is made from the bundled sample's full-resolution ILSVRC photos (about 500x375, the size
of ImageNet training images), each copy given a JPEG comment segment so every file has its own
bytes and SHA-256. Classes hold 314 images = 157 pairs, the paper's target, so a default build
fills all three tiers. Each method runs in its own process with the page cache warm (every file
read once before), writing to the same disk; peak RSS is that process's maximum resident memory.

- cat: `cat` of exactly the bytes a build embeds (both images of every pair, then the AP images)
  into one file. The goal is a build at >= 70% of it. `cat + fsync` adds the flush to disk that a
  build does for every shard. GNU cat copies file to file with `copy_file_range`, inside the
  kernel; `cat | dd` makes the same copy pass through user space (read + write with a 1 MiB
  buffer), which is the floor for any tool that must look at the bytes (hash them, frame them).
- build: `semantic-pairs build` (default settings, AP = image_a of each pair): plan, SHA-256 check
  of every file, shards written in parallel, manifests, card.
- datasets: `Dataset.from_dict` of paths + `cast_column(Image())` + `save_to_disk`, which embeds
  the bytes (`to_parquet` would store only the paths: checked and printed below).

    python benchmarks/build_throughput.py [--gb 1.0] [--workers N] [--keep]

Prints the machine, the library versions and a table. Figures are provisional on a shared machine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "imagenet" / "train"
IMAGES_PER_CLASS = 314  # 157 pairs (paper §3.1.1)


def with_comment(data: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: other bytes, identical pixels."""
    payload = text.encode()
    return data[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def full_resolution_photos() -> list[bytes]:
    from PIL import Image

    photos = []
    for path in sorted(SAMPLE.rglob("*")):
        if path.is_file():
            with Image.open(path) as image:
                if image.format == "JPEG" and image.width * image.height >= 300 * 300:
                    photos.append(path.read_bytes())
    return photos


def make_tree(root: Path, gigabytes: float) -> tuple[Path, Path, list[tuple[str, str]]]:
    """Images under root/images, a pair manifest under root/manifest; returns the pairs."""
    sys.path.insert(0, str(REPO))
    from pair_manifest.classes import load_selection, selection_from_wnids
    from pair_manifest.manifest import decisions_table, pairs_table, write_manifest
    from pair_manifest.store import AcceptedPair, Decision

    photos = full_resolution_photos()
    mean = sum(map(len, photos)) / len(photos)
    classes = math.ceil(gigabytes * 1e9 / (IMAGES_PER_CLASS * mean))
    wnids = [c.wnid for c in load_selection().classes][:classes]
    images = root / "images"
    pairs, decisions, accepted = [], [], []
    for c, wnid in enumerate(wnids):
        (images / wnid).mkdir(parents=True)
        files = []
        for i in range(IMAGES_PER_CLASS):
            data = with_comment(photos[(i + c) % len(photos)], f"benchmark {wnid} {i}")
            name = f"{wnid}/{wnid}_{i:05d}.JPEG"
            (images / name).write_bytes(data)
            files.append((name, hashlib.sha256(data).hexdigest()))
        for j in range(IMAGES_PER_CLASS // 2):
            (a, sha_a), (b, sha_b) = files[2 * j], files[2 * j + 1]
            decision = Decision(len(decisions) + 1, f"bench:{a}", wnid, a, b, sha_a, sha_b, "accept",
                                ("background",), "benchmark", "2026-01-01T00:00:00.000000Z", "manual", None, None)
            decisions.append(decision)
            accepted.append(AcceptedPair(decision, j, "unreviewed"))
            pairs.append((a, b))
    selection = selection_from_wnids(wnids)
    manifest = root / "manifest"
    write_manifest(manifest, pairs_table(accepted, selection), decisions_table(decisions, selection.wnids))
    return images, manifest, pairs


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], **kwargs) -> tuple[float, dict]:
    """Wall seconds of a child process, and what it printed as JSON plus its CPU seconds (user +
    system, grandchildren included): on a loaded machine CPU time says more than wall time."""
    cpu, start = _children_cpu(), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{result.stdout}\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    info = json.loads(lines[-1]) if lines else {}
    info["cpu_seconds"] = _children_cpu() - cpu
    return seconds, info


def cat_files(listing: Path, out: Path, fsync: bool) -> tuple[float, dict]:
    script = f"xargs -0 -a {listing} cat > {out}" + (f" && sync {out}" if fsync else "")
    result = timed(["bash", "-c", script])
    out.unlink()
    return result


BUILD = """
import json, resource, sys
from builders.build import build_release
from builders.plan import BuildSettings
result = build_release(sys.argv[1], sys.argv[2], sys.argv[3], BuildSettings(), workers=int(sys.argv[4]))
print(json.dumps({"image_bytes": result.image_bytes, "shards": result.shards,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

DATASETS_ROUTE = """
import json, resource, sys
import pyarrow.parquet as pq
from datasets import Dataset, Image, load_from_disk
images, out = sys.argv[1], sys.argv[2]
pairs = json.load(open(sys.argv[3]))
a = [f"{images}/{p[0]}" for p in pairs]
b = [f"{images}/{p[1]}" for p in pairs]
sp = Dataset.from_dict({"file_a": [p[0] for p in pairs], "file_b": [p[1] for p in pairs],
                        "image_a": a, "image_b": b})
sp = sp.cast_column("image_a", Image()).cast_column("image_b", Image())
sp.save_to_disk(f"{out}/sp")
ap = Dataset.from_dict({"file": [p[0] for p in pairs], "image": a}).cast_column("image", Image())
ap.save_to_disk(f"{out}/ap")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
embedded = load_from_disk(f"{out}/ap").cast_column("image", Image(decode=False))[0]["image"]["bytes"] is not None
ap.select(range(10)).to_parquet(f"{out}/ap-10.parquet")
parquet_bytes = pq.read_table(f"{out}/ap-10.parquet").column("image").to_pylist()[0]["bytes"]
print(json.dumps({"peak_rss_mb": peak, "save_to_disk_embeds": embedded,
                  "to_parquet_embeds": parquet_bytes is not None}))
"""


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("pyarrow", "datasets", "huggingface_hub", "pillow"))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, load average {load}; "
            f"Python {platform.python_version()}; {platform.platform()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the class tree (default 1.0 GB)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="build workers (default: cores)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    args = parser.parse_args()
    python = sys.executable
    env = dict(os.environ, HF_UPDATE_DOWNLOAD_COUNTS="false", PYTHONPATH=str(REPO))
    print(f"machine:  {machine()}")
    print(f"versions: {versions()}")
    tmp = Path(tempfile.mkdtemp(prefix="build_throughput_"))
    try:
        start = time.perf_counter()
        images, manifest, pairs = make_tree(tmp, args.gb)
        sizes = {p.relative_to(images).as_posix(): p.stat().st_size for p in images.rglob("*.JPEG")}
        embedded = [f for a, b in pairs for f in (a, b)] + [a for a, _ in pairs]  # SP, then AP = image_a
        embedded_bytes = sum(sizes[f] for f in embedded)
        print(f"tree:     {len(sizes)} images in {len({f.split('/')[0] for f in sizes})} classes, "
              f"{sum(sizes.values()) / 1e9:.2f} GB, {len(pairs)} pairs; a build embeds {embedded_bytes / 1e9:.2f} GB "
              f"(made in {time.perf_counter() - start:.0f} s under {tmp})")
        listing = tmp / "files.list"
        listing.write_bytes(b"\0".join(str(images / f).encode() for f in embedded))
        pairs_json = tmp / "pairs.json"
        pairs_json.write_text(json.dumps(pairs))

        def warm() -> None:
            timed(["bash", "-c", f"xargs -0 -a {listing} cat > /dev/null"])

        rows = []
        warm()
        rows.append(("cat > /dev/null (read only)", *timed(["bash", "-c", f"xargs -0 -a {listing} cat > /dev/null"])))
        warm()
        cat, cat_info = cat_files(listing, tmp / "cat.bin", fsync=False)
        rows.append(("cat > file", cat, cat_info))
        warm()
        rows.append(("cat > file + fsync", *cat_files(listing, tmp / "cat.bin", fsync=True)))
        warm()
        piped = f"xargs -0 -a {listing} cat | dd of={tmp / 'dd.bin'} bs=1M status=none"
        rows.append(("cat | dd > file (copy through user space)", *timed(["bash", "-c", piped])))
        (tmp / "dd.bin").unlink()
        for workers in sorted({1, args.workers}):
            warm()
            out = tmp / f"build_{workers}" / "semantic_pairs"
            seconds, info = timed([python, "-c", BUILD, str(manifest), str(images), str(out), str(workers)],
                                  env=env, cwd=REPO)
            assert info["image_bytes"] == embedded_bytes, (info, embedded_bytes)
            rows.append((f"semantic-pairs build, {workers} worker(s), {info['shards']} shards", seconds, info))
            shutil.rmtree(out.parent)
        warm()
        seconds, info = timed([python, "-c", DATASETS_ROUTE, str(images), str(tmp / "datasets_route"),
                               str(pairs_json)], env=env, cwd=tmp)
        rows.append(("datasets: from_dict + cast_column(Image()) + save_to_disk", seconds, info))
        shutil.rmtree(tmp / "datasets_route")

        print(f"\n{'method':<62} {'wall s':>7} {'MB/s':>6} {'vs cat':>7} {'CPU s':>6} {'peak RSS':>9}")
        for name, seconds, info in rows:
            rate = embedded_bytes / 1e6 / seconds
            rss = f"{info['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in info else "-"
            print(f"{name:<62} {seconds:>7.1f} {rate:>6.0f} {cat / seconds:>6.0%} {info['cpu_seconds']:>6.1f} {rss:>9}")
        print(f"\nMB/s = image bytes embedded ({embedded_bytes / 1e6:.0f} MB) / wall time; 'vs cat' = cat > file time / "
              "method time (goal for the build: >= 70%); CPU s = user + system seconds of the process tree.\n"
              "GNU cat copies file to file with copy_file_range (in the kernel, the bytes never pass through user "
              "space); `cat | dd` is the same copy through user space, as any tool that must look at the bytes does.\n"
              "The build reads and hashes every file before writing anything, then reads, hashes and encodes them "
              "into Parquet, and fsyncs each shard.")
        route = rows[-1][2]
        print(f"datasets route check: save_to_disk embeds bytes: {route['save_to_disk_embeds']}; "
              f"to_parquet embeds bytes: {route['to_parquet_embeds']} (paths only when False)")
        print("Provisional figures: shared machine, other jobs running (see load average above).")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
