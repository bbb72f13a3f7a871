"""Evaluation speed: feature-extraction images/s and the end-to-end time of a linear evaluation.

Reuses the real evaluation code (`training.eval`): a run folder in the training format holding a
freshly initialised backbone (speed does not depend on the weights), the real dataset loading,
decoding and resizing, the frozen forward pass, the feature cache, the L-BFGS weight-decay sweep
and kNN. Prints the device, torch version and date with a table.

    .venv/bin/python benchmarks/eval_throughput.py                   # CIFAR-10 from the Hub when cached
    .venv/bin/python benchmarks/eval_throughput.py --dataset sample_data/cifar10   # offline: the sample
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.backbones import BackboneSpec, build_backbone  # noqa: E402
from training.eval.classify import evaluate_frozen  # noqa: E402
from training.eval.datasets import open_dataset  # noqa: E402
from training.eval.errors import EvalError  # noqa: E402
from training.eval.features import extract, image_loader, normalize, pick_device  # noqa: E402
from training.eval.runs import load_run  # noqa: E402


def make_run(folder: Path, backbone: str, resolution: int) -> Path:
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model, _ = build_backbone(BackboneSpec(backbone, "imagenet", resolution))
    torch.save({"eval_backbone": model.state_dict()}, folder / "checkpoints" / "last.pt")
    config = {"backbone": {"name": backbone, "stem": "imagenet", "image_size": resolution}, "resolution": resolution}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def forward_rate(run, device: torch.device, batch_size: int, seconds: float = 5.0) -> float:
    """Backbone forward images/s on a batch already on the device (the ceiling for extraction)."""
    model = run.backbone.to(device).eval()
    batch = torch.randint(0, 256, (batch_size, 3, run.resolution, run.resolution), dtype=torch.uint8, device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    images = normalize(batch, run.mean, run.std)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    model(images)  # warm-up (cuDNN autotuning, allocator)
    sync(device)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model(images)
        count += batch_size
    sync(device)
    return count / (time.perf_counter() - started)


def decode_rate(split, resolution: int, batch_size: int, workers: int | None) -> float:
    started, count = time.perf_counter(), 0
    for images, _ in image_loader(split, resolution, batch_size, workers):
        count += images.shape[0]
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", help="cifar10 (Hub copy, when cached) or a local folder")
    parser.add_argument("--backbone", default="resnet50", help="paper: resnet50")
    parser.add_argument("--resolution", type=int, default=64, help="paper: 64")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = pick_device(args.device)
    try:
        data = open_dataset(args.dataset)
        dataset_note = args.dataset
    except EvalError as error:
        fallback = str(REPO / "sample_data" / "cifar10")
        print(f"note: {error}; using the bundled CIFAR-10 sample instead", file=sys.stderr)
        data, dataset_note = open_dataset(fallback), "bundled CIFAR-10 sample"
        args.dataset = fallback
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    print(f"# eval throughput  {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"device: {name}   torch {torch.__version__}   python {platform.python_version()}")
    print(f"backbone: {args.backbone} at {args.resolution}x{args.resolution}, batch {args.batch_size}; "
          f"dataset: {dataset_note} ({len(data.train)} train / {len(data.test)} test)")
    if device.type == "cpu":
        print("note: CPU figures on a shared machine are provisional (other processes compete for the cores)")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(Path(tmp) / "run", args.backbone, args.resolution)
        run = load_run(run_dir)
        rows.append(("decode + resize (CPU workers)", f"{decode_rate(data.test, args.resolution, args.batch_size, args.workers):,.0f} images/s"))
        rows.append(("backbone forward only (on device)", f"{forward_rate(run, device, args.batch_size):,.0f} images/s"))
        started = time.perf_counter()
        features = extract(run, data.test, device, args.batch_size, args.workers)
        sync(device)
        elapsed = time.perf_counter() - started
        rows.append(("feature extraction, end to end (test split)", f"{features.x.shape[0] / elapsed:,.0f} images/s"))

        started = time.perf_counter()
        cold, _ = evaluate_frozen("linear", run_dir, args.dataset, args.device, args.batch_size, args.workers)
        rows.append(("linear eval, end to end, cold cache", f"{time.perf_counter() - started:,.1f} s "
                     f"(top-1 {100 * cold['top1']:.1f}% of a random init; wd {cold['weight_decay']:g})"))
        started = time.perf_counter()
        evaluate_frozen("linear", run_dir, args.dataset, args.device, args.batch_size, args.workers)
        rows.append(("linear eval, features cached (7-value sweep + refit)", f"{time.perf_counter() - started:,.1f} s"))
        started = time.perf_counter()
        evaluate_frozen("knn", run_dir, args.dataset, args.device, args.batch_size, args.workers)
        rows.append(("kNN eval, features cached", f"{time.perf_counter() - started:,.2f} s"))

    width = max(len(label) for label, _ in rows)
    print()
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for label, value in rows:
        print(f"| {label.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
