"""Build throughput: MB/s of image bytes written by `semantic-pairs build`, against reading the
same files with `cat`, against the SHA-256 of the same files (the floor of any build that checks
its input), and against the straightforward `datasets` route, on a >= 1 GB class tree.

The tree is made from the bundled sample's full-resolution ILSVRC photos (about 500x375, the size
of ImageNet training images), each copy given a JPEG comment segment so every file has its own
bytes and SHA-256. Classes hold 314 images = 157 pairs, the paper's target, so a default build
fills all three tiers. A build embeds SP (both images of every pair) and AP (the image_a of each
pair): 1.5x the tree's bytes. Every row below handles those same embedded bytes, with the page
cache warm (all files read just before each run, as a build that follows a check would find
them); MB/s is always embedded bytes / wall seconds.

- cat: `cat` of the embedded files, in build order, to /dev/null: reading the same files. The
  issue's goal is a build at >= 70% of it. `cat` is one process on one core; the row with
  N processes (xargs -P N) shows the machine's read rate on every core.
- sha256: the files read into a reused buffer and hashed with hashlib (what the build does for
  each file), on one thread and on N threads (hashlib releases the GIL).
- O_DIRECT write: `dd` of as many bytes to one file with O_DIRECT, the disk's rate.
- build: `semantic-pairs build` (default settings) in a fresh process, through the installed
  command's entry point: imports, plan, file check, shards written, manifests, card; 1 worker
  and N workers. The next row is its shard
  writing alone (timed inside the process): the rate a larger build tends to, once the fixed
  start-up is spread over more bytes.
- datasets: `Dataset.from_dict` of paths + `cast_column(Image())` + `save_to_disk` for SP and
  AP, which embeds the bytes (checked and printed, as is whether `to_parquet` would).

After the table: where the fastest build spent its time (imports, validation and planning,
locating the files, writing, the rest), and what filling memory for the first time costs, measured
in a fresh process (pyarrow's pool, small-page anonymous memory, the same memory again): the cost
that writing through the page cache pays for every page, and O_DIRECT avoids.

One script of over 400 lines, because every row must be measured on the same tree, in the same
run and warm page cache, for the ratios between rows to mean anything.

Each method runs --repeat times, in turn, in its own process; the table shows the best and the
median wall time and CPU seconds (user + system of the process tree). On a machine shared with
other jobs, CPU seconds say more than wall time; the load average is printed with the figures.

    python benchmarks/build_throughput.py [--gb 1.0 | --classes 187] [--workers N] [--repeat 3] [--keep] [--plot PNG]
        [--variant NAME=DIR ...] [--builds-only]

`--variant NAME=DIR` also times the build of the code in DIR (another checkout, e.g. one with a
speed mechanism taken out), in turn with this checkout's, on the same tree: how the comparisons
in BENCHMARKS.md were made. `--builds-only` leaves out everything but `cat` and the builds.

`--classes 187` is the size of the full release (29,359 pairs, 58,718 photos, 4.7 GB).
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
import statistics
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


def make_tree(root: Path, gigabytes: float, classes: int | None = None) -> tuple[Path, Path, list[tuple[str, str]]]:
    """Images under root/images, a pair manifest under root/manifest; returns the pairs."""
    sys.path.insert(0, str(REPO))
    from pair_manifest.classes import load_selection, selection_from_wnids
    from pair_manifest.manifest import decisions_table, pairs_table, write_manifest
    from pair_manifest.store import AcceptedPair, Decision

    photos = full_resolution_photos()
    mean = sum(map(len, photos)) / len(photos)
    available = [c.wnid for c in load_selection().classes]
    classes = classes or math.ceil(gigabytes * 1e9 / (IMAGES_PER_CLASS * mean))
    if classes > len(available):
        raise SystemExit(f"--gb {gigabytes} needs {classes} classes, the selection has {len(available)}: "
                         f"use --classes {len(available)} for the full release")
    wnids = available[:classes]
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
    system, grandchildren included)."""
    cpu, start = _children_cpu(), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{result.stdout}\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    info = json.loads(lines[-1]) if lines else {}
    info["cpu_seconds"] = _children_cpu() - cpu
    return seconds, info


SHA256 = """
import hashlib, json, os, sys
from concurrent.futures import ThreadPoolExecutor
files = open(sys.argv[1], "rb").read().split(b"\\0")
threads = int(sys.argv[2])
def run(part):
    buffer = bytearray(64 << 20)
    view = memoryview(buffer)
    for name in part:
        fd = os.open(name, os.O_RDONLY)
        try:
            n = os.readv(fd, [view])
        finally:
            os.close(fd)
        hashlib.sha256(view[:n]).hexdigest()
parts = [files[i::threads] for i in range(threads)]
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(run, parts))
"""

BUILD = """
import time
started = time.perf_counter()
import json, resource, sys
import builders.build
from semantic_pairs_cli.main import console
imported = time.perf_counter() - started

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

phase = {}
write_shards, build_release = builders.build._write_shards, builders.build.build_release
def timed_write_shards(*args, **kwargs):  # the shard-writing phase alone, for the steady-state rate
    start, start_cpu = time.perf_counter(), cpu()
    write_shards(*args, **kwargs)
    phase.update(write_seconds=time.perf_counter() - start, write_cpu_seconds=cpu() - start_cpu)
def kept_build_release(*args, **kwargs):
    result = build_release(*args, **kwargs)
    phase["image_bytes"] = result.image_bytes
    return result
def timed(function, key):  # the other phases of the start-up, for the breakdown
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            phase[key] = time.perf_counter() - start
    return run
builders.build._write_shards, builders.build.build_release = timed_write_shards, kept_build_release
builders.build.plan_from_manifest = timed(builders.build.plan_from_manifest, "plan_seconds")
builders.build.locate_sources = timed(builders.build.locate_sources, "locate_seconds")
manifest, images, out, workers = sys.argv[1:5]
sys.argv = ["semantic-pairs", "build", "--manifest", manifest, "--images", images, "--out", out, "--workers", workers]
code = console()  # the installed command's entry point, in this fresh process
print(json.dumps({**phase, "exit_code": code, "import_seconds": imported,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
sys.exit(code)
"""

FIRST_FILL = """
import json, mmap, time
import pyarrow as pa
size = 64 << 20
source = memoryview(bytes(size))
def first_fill(buffer):  # ns per byte to fill memory never touched before (the page faults included)
    view = memoryview(buffer).cast("B")
    start = time.perf_counter()
    view[:] = source
    return (time.perf_counter() - start) / size * 1e9
small_pages = pa.py_buffer(mmap.mmap(-1, size))
print(json.dumps({"pyarrow_pool_first_fill_ns_per_byte": first_fill(pa.allocate_buffer(size)),
                  "small_pages_first_fill_ns_per_byte": first_fill(small_pages),
                  "reused_fill_ns_per_byte": first_fill(small_pages)}))
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
    cpu, sha = "unknown CPU", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown CPU":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and sha == "unknown":
                sha = "yes" if "sha_ni" in line.split() else "no"
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.node()}: {cpu} (SHA extensions: {sha}), {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
            f"load average {load}; Python {platform.python_version()}; {platform.platform()}")


def plot(path: Path, rates: list[tuple[str, float]], cat_rate: float, title: str) -> None:
    """Horizontal bars of MB/s (best run) per method, with the goal (70% of cat) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, values = [name.strip() for name, _ in rates][::-1], [rate for _, rate in rates][::-1]
    colours = ["tab:green" if name.startswith(("semantic-pairs", "of which")) else
               "tab:red" if name.startswith("datasets") else "tab:gray" for name in names]
    figure, axes = plt.subplots(figsize=(10, 0.45 * len(names) + 1.2))
    axes.barh(names, values, color=colours)
    axes.axvline(0.7 * cat_rate, color="black", linestyle="--", linewidth=1, label="goal: 70% of cat")
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    axes.set_xlim(0, max(values) * 1.12)  # room for the labels
    axes.set_xlabel("MB/s of embedded image bytes (best of the runs)")
    axes.set_title(title, fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the class tree (default 1.0 GB)")
    parser.add_argument("--classes", type=int, help="classes of 314 images instead of --gb; 187 is the size of "
                                                    "the full release (29,359 pairs)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="build workers (default: cores)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also draw the MB/s of each method here")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                        help="also time the build of the code in DIR (repeatable)")
    parser.add_argument("--builds-only", action="store_true", help="only cat and the builds (N workers)")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    python = sys.executable
    cores = os.cpu_count() or 1
    env = dict(os.environ, HF_UPDATE_DOWNLOAD_COUNTS="false", PYTHONPATH=str(REPO))
    print(f"machine:  {machine()}")
    print(f"versions: {versions()}")
    tmp = Path(tempfile.mkdtemp(prefix="build_throughput_"))
    try:
        start = time.perf_counter()
        images, manifest, pairs = make_tree(tmp, args.gb, args.classes)
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
        warm = ["bash", "-c", f"xargs -0 -a {listing} cat > /dev/null"]

        def build(workers: int, code: Path = REPO):
            out = tmp / f"build_{workers}" / "semantic_pairs"
            result = timed([python, "-c", BUILD, str(manifest), str(images), str(out), str(workers)],
                           env=dict(env, PYTHONPATH=str(code)), cwd=code)
            assert result[1]["image_bytes"] == embedded_bytes, (result[1], embedded_bytes)
            shutil.rmtree(out.parent)
            return result

        def datasets_route():
            result = timed([python, "-c", DATASETS_ROUTE, str(images), str(tmp / "datasets_route"), str(pairs_json)],
                           env=env, cwd=tmp)
            shutil.rmtree(tmp / "datasets_route")
            return result

        def direct_write():
            count = math.ceil(embedded_bytes / (8 << 20))
            result = timed(["dd", "if=/dev/zero", f"of={tmp / 'dd.bin'}", "bs=8M", f"count={count}", "oflag=direct",
                            "status=none"])
            (tmp / "dd.bin").unlink()
            return result

        methods = {"cat > /dev/null (the goal's reference)": lambda: timed(warm)}
        if not args.builds_only:
            methods.update({
                f"cat > /dev/null, {cores} processes": lambda: timed(
                    ["bash", "-c", f"xargs -0 -a {listing} -n 200 -P {cores} cat > /dev/null"]),
                "read + sha256 (hashlib), 1 thread": lambda: timed([python, "-c", SHA256, str(listing), "1"]),
                f"read + sha256 (hashlib), {cores} threads": lambda: timed(
                    [python, "-c", SHA256, str(listing), str(cores)]),
                "dd of=file oflag=direct (disk write rate)": direct_write,
            })
        for workers in sorted({args.workers} if args.builds_only else {1, args.workers}):
            methods[f"semantic-pairs build, {workers} worker(s)"] = lambda workers=workers: build(workers)
            for name, code in variants.items():
                methods[f"semantic-pairs build ({name}), {workers} worker(s)"] = \
                    lambda workers=workers, code=code: build(workers, Path(code))
        if not args.builds_only:
            methods["datasets: from_dict + cast_column(Image()) + save_to_disk"] = datasets_route
        runs: dict[str, list[tuple[float, dict]]] = {name: [] for name in methods}
        loads = [os.getloadavg()[0]]
        for _ in range(args.repeat):
            for name, method in methods.items():
                timed(warm)
                runs[name].append(method())
                loads.append(os.getloadavg()[0])

        cat_best = min(seconds for seconds, _ in runs["cat > /dev/null (the goal's reference)"])
        print(f"\n{args.repeat} runs each, load average {min(loads):.1f}-{max(loads):.1f} during the runs "
              f"({cores} cores); MB/s = {embedded_bytes / 1e6:.0f} MB of embedded image bytes / wall seconds")
        print(f"{'method':<58} {'best s':>7} {'median':>7} {'MB/s':>6} {'vs cat':>7} {'CPU s':>6} {'med CPU':>7} {'peak RSS':>9}")
        rows = []
        for name, results in runs.items():
            rows.append((name, results))
            if name.startswith("semantic-pairs build"):  # its shard-writing phase, timed inside the process
                rows.append((f"  of which writing the shards, {name.split(', ')[-1]}",
                             [(info["write_seconds"], {"cpu_seconds": info["write_cpu_seconds"]}) for _, info in results]))
        for name, results in rows:
            walls = sorted(seconds for seconds, _ in results)
            cpus = sorted(info["cpu_seconds"] for _, info in results)
            rss = max((info.get("peak_rss_mb", 0) for _, info in results), default=0)
            print(f"{name:<58} {walls[0]:>7.2f} {statistics.median(walls):>7.2f} {embedded_bytes / 1e6 / walls[0]:>6.0f} "
                  f"{cat_best / walls[0]:>6.0%} {cpus[0]:>6.2f} {statistics.median(cpus):>7.2f} "
                  f"{f'{rss:.0f} MB' if rss else '-':>9}")
        fastest = min((result for name, results in runs.items() if name.startswith("semantic-pairs build,")
                       for result in results), key=lambda result: result[0])
        startup = fastest[0] - fastest[1]["write_seconds"]
        info = fastest[1]
        rest = fastest[0] - info["import_seconds"] - info["plan_seconds"] - info["locate_seconds"] - info["write_seconds"]
        print(f"\nfastest build, {fastest[0]:.2f} s: Python start-up and imports {info['import_seconds']:.2f} s (plus the "
              f"interpreter's own start), manifest read, validation and planning {info['plan_seconds']:.2f} s, locating "
              f"the files {info['locate_seconds']:.2f} s, writing the shards {info['write_seconds']:.2f} s, the rest "
              f"(interpreter start, manifests, card, final rename, exit) {rest:.2f} s")
        memory = min((timed([python, "-c", FIRST_FILL], env=env)[1] for _ in range(3)),
                     key=lambda costs: costs["pyarrow_pool_first_fill_ns_per_byte"])
        print(f"first fill of a 64 MiB buffer (what each new page costs, as every page written through the page "
              f"cache does): pyarrow's pool {memory['pyarrow_pool_first_fill_ns_per_byte']:.2f} ns/byte, "
              f"small-page anonymous memory {memory['small_pages_first_fill_ns_per_byte']:.2f} ns/byte; the same "
              f"memory again {memory['reused_fill_ns_per_byte']:.2f} ns/byte")
        print("\n'vs cat' = best cat time / best time of the method (the goal for the build: >= 70%). The build reads "
              f"and hashes each distinct file once ({sum(sizes[f] for f in set(embedded)) / 1e9:.2f} GB: AP is written "
              "from the bytes read for SP), writes the shards with O_DIRECT and fsyncs them; its time includes "
              "Python start-up, imports, manifest validation, planning, locating the files and the card "
              f"({startup:.2f} s in the fastest build), which 'of which writing the shards' leaves out.")
        if not args.builds_only:
            route = runs["datasets: from_dict + cast_column(Image()) + save_to_disk"][-1][1]
            print(f"datasets route check: save_to_disk embeds bytes: {route['save_to_disk_embeds']}; "
                  f"to_parquet embeds bytes: {route['to_parquet_embeds']} (paths only when False)")
        print("Provisional figures: shared machine, other jobs running (see load average above).")
        if args.plot:
            title = (f"{len(sizes):,} photos, {len(pairs):,} pairs: a build embeds {embedded_bytes / 1e9:.2f} GB "
                     f"({platform.node()}, {cores} cores, {time.strftime('%Y-%m-%d')})")
            plot(args.plot, [(name, embedded_bytes / 1e6 / min(s for s, _ in results)) for name, results in rows],
                 embedded_bytes / 1e6 / cat_best, title)
            print(f"plot: {args.plot}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
