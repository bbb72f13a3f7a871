"""Evaluation speed at the real size: feature extraction images/s, seconds per linear evaluation
(the L-BFGS weight-decay sweep plus the refit), kNN seconds, and peak memory.

Real size means all of CIFAR-10 (50,000 train, 10,000 test) read the way a user's `semantic-pairs
eval linear --run RUN --dataset cifar10` reads it: the short name resolves to the Hub id
`uoft-cs/cifar10`, which `datasets.load_dataset` fetches over HTTP. Offline, that Hub is the loopback
server the tests use (tests/support/loopback_hub.py), holding a folder in the Hub's layout under
that id (`--hub-folder`, e.g. a copy of CIFAR-10 as `plain_text/{train,test}-*.parquet`). Each
command runs as its own process, as a user's would; the run folder holds a freshly initialised
backbone (speed does not depend on the weights).

    .venv/bin/python benchmarks/eval_throughput.py --hub-folder DIR [--backbone resnet50 --resolution 64]
    .venv/bin/python benchmarks/eval_throughput.py --from-images sample_data/cifar10 \
        --train-images 50000 --test-images 10000     # CIFAR-10's size from a train/ test/ folder, repeated
    .venv/bin/python benchmarks/eval_throughput.py --dataset sample_data/cifar10      # any local dataset

Prints the device, torch version and date with a table. Figures from a shared CPU machine are
provisional.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HUB_ID = "uoft-cs/cifar10"  # what `--dataset cifar10` resolves to (training/eval/datasets.py)
# Runs a `semantic-pairs` command in-process and reports its time and peak RSS.
CHILD = ("import json, resource, sys, time\n"
         "from semantic_pairs_cli.main import main\n"
         "started = time.perf_counter()\n"
         "code = main(sys.argv[1:])\n"
         "print(json.dumps({'code': code, 'seconds': time.perf_counter() - started,\n"
         "    'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stderr)\n")


def make_run(folder: Path, backbone: str, resolution: int) -> Path:
    import torch

    from training.backbones import BackboneSpec, build_backbone

    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model, _ = build_backbone(BackboneSpec(backbone, "imagenet", resolution))
    torch.save({"eval_backbone": model.state_dict()}, folder / "checkpoints" / "last.pt")
    config = {"backbone": {"name": backbone, "stem": "imagenet", "image_size": resolution}, "resolution": resolution}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def hub_folder_from_images(images: Path, out: Path, train: int, test: int) -> Path:
    """A folder in uoft-cs/cifar10's Hub layout (`plain_text/{train,test}-*.parquet`, columns `img`
    and `label`) holding `train` and `test` images taken in turn, repeated as needed, from
    `images/{train,test}/<class>/`: the real count where the real images cannot travel."""
    import datasets

    classes = sorted(p.name for p in (images / "train").iterdir() if p.is_dir())
    (out / "plain_text").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        pool = [(path.read_bytes(), label) for label, name in enumerate(classes)
                for path in sorted((images / split / name).iterdir()) if path.is_file()]
        rows = [pool[i % len(pool)] for i in range(count)]
        features = datasets.Features(img=datasets.Image(), label=datasets.ClassLabel(names=classes))
        datasets.Dataset.from_dict({"img": [{"bytes": b, "path": None} for b, _ in rows],
                                    "label": [label for _, label in rows]}, features=features) \
            .to_parquet(str(out / "plain_text" / f"{split}-00000-of-00001.parquet"))
    (out / "README.md").write_text("---\nconfigs:\n- config_name: plain_text\n  default: true\n  data_files:\n"
                                   "  - split: train\n    path: plain_text/train-*\n"
                                   "  - split: test\n    path: plain_text/test-*\n---\n")
    return out


def run_command(args: list[str], env: dict) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    report = next((json.loads(line) for line in reversed(done.stderr.splitlines()) if line.startswith("{")), None)
    if done.returncode != 0 or report is None or report["code"] != 0:
        raise SystemExit(f"`semantic-pairs {' '.join(args)}` failed:\n{done.stderr[-3000:]}")
    return {**report, "wall": wall, "stdout": done.stdout.strip()}


def forward_rate(run_dir: Path, device_name: str, batch_size: int, seconds: float = 5.0) -> float:
    """Backbone forward images/s on a batch already on the device (the ceiling for extraction)."""
    import torch

    from training.eval.features import pick_device
    from training.eval.runs import load_run

    device = pick_device(device_name)
    run = load_run(run_dir)
    model = run.backbone.to(device).eval()
    batch = torch.rand(batch_size, 3, run.resolution, run.resolution, device=device)
    with torch.no_grad():
        model(batch)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model(batch)
            count += batch_size
        if device.type == "cuda":
            torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hub-folder", type=Path, help=f"a folder in the Hub layout, served as {HUB_ID}")
    source.add_argument("--from-images", type=Path,
                        help="a train/<class>/, test/<class>/ folder, repeated to --train-images/--test-images "
                             f"and served as {HUB_ID}")
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    source.add_argument("--dataset", help="any dataset `eval` reads (a local folder, a Hub id)")
    parser.add_argument("--backbone", default="resnet50", help="paper: resnet50")
    parser.add_argument("--resolution", type=int, default=64, help="paper: 64")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch

    from training.eval.features import pick_device

    device = pick_device(args.device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})")
    print(f"# eval throughput  {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"device: {name}   torch {torch.__version__}   python {platform.python_version()}   "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_dir = make_run(tmp / "run", args.backbone, args.resolution)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        hub = None
        dataset = args.dataset
        if args.from_images:
            args.hub_folder = hub_folder_from_images(args.from_images, tmp / "hub_folder", args.train_images,
                                                     args.test_images)
        if args.hub_folder:
            from tests.support.loopback_hub import LoopbackHub
            from tests.training.eval_support import seed_hub

            hub = LoopbackHub(tmp / "hub").start()
            size = seed_hub(hub, args.hub_folder, HUB_ID)  # tests/training/eval_support.py
            env = hub.client_env(tmp / "hf_home", token=None, base=env)
            dataset = "cifar10"  # the short name: resolved to the Hub id, fetched over HTTP
            print(f"dataset: {args.hub_folder} served as {HUB_ID} by the loopback Hub ({size / 1e6:.0f} MB), "
                  f"evaluated as --dataset cifar10")
        else:
            print(f"dataset: {dataset}")
        print(f"backbone: {args.backbone} at {args.resolution}x{args.resolution}, batch {args.batch_size}", flush=True)
        try:
            common = ["--run", str(run_dir), "--dataset", dataset, "--device", args.device,
                      "--batch-size", str(args.batch_size)]
            cold = run_command(["eval", "linear", *common], env)
            first = json.loads(next((run_dir / "eval").glob("linear-*.json")).read_text())
            warm = run_command(["eval", "linear", *common], env)
            linear = json.loads(next((run_dir / "eval").glob("linear-*.json")).read_text())
            run_command(["eval", "knn", *common], env)
            knn = json.loads(next((run_dir / "eval").glob("knn-*.json")).read_text())
        finally:
            if hub is not None:
                hub.stop()
        images = first["num_train"] + first["num_test"]
        extraction = first["timing"]["feature_seconds"]
        rows += [
            ("images (train + test)", f"{first['num_train']:,} + {first['num_test']:,}"),
            ("backbone forward only (on device)", f"{forward_rate(run_dir, args.device, args.batch_size):,.0f} images/s"),
            ("feature extraction (decode, resize, forward), both splits",
             f"{images / extraction:,.0f} images/s ({extraction:,.1f} s)"),
            ("dataset load (first: download + Arrow conversion / cached)",
             f"{first['timing']['load_seconds']:,.1f} s / {linear['timing']['load_seconds']:,.1f} s"),
            ("linear fit: 7-value weight-decay sweep + refit",
             f"{linear['timing']['fit_seconds']:,.1f} s (top-1 {100 * linear['top1']:.1f}% of a random init, "
             f"weight decay {linear['weight_decay']:g})"),
            ("kNN (k=20) over the test queries", f"{knn['timing']['fit_seconds']:,.1f} s"),
            ("eval linear end to end: first / features cached (process wall time)",
             f"{cold['wall']:,.1f} s / {warm['wall']:,.1f} s"),
            ("peak RSS of an eval process (decoding workers are forks of it)",
             f"{max(r['rss_mb'] for r in (cold, warm)):,.0f} MB"),
        ]
    width = max(len(label) for label, _ in rows)
    print()
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for label, value in rows:
        print(f"| {label.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
