"""What each proposal embedder costs per image on this machine's CPU: prints figures, asserts nothing.

    .venv/bin/python benchmarks/proposals_embedders.py [--images N] [--threads T]

For each embedder, the worker side (read, decode, the facts every embedder needs, the embedder's
own input) and the model side (`embed` on batches of 64, torch with T threads) on N photos of the
bundled sample (full-resolution ILSVRC photos first). Networks are timed with random weights: the
cost of a forward pass does not depend on the weights, and none are downloaded here. A checkpoint
of `semantic-pairs train` is a ResNet at its training resolution (64 px): timed as
`checkpoint-like resnet18@64` and `resnet50@64`.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation_app.proposals.embedders import Embedder  # noqa: E402
from curation_app.proposals.worker import describe  # noqa: E402

SAMPLE = REPO / "sample_data" / "imagenet" / "train"


def photos(count: int) -> list[bytes]:
    from PIL import Image

    paths = sorted(SAMPLE.rglob("*.JPEG"))
    large = []
    for path in paths:
        with Image.open(path) as image:
            if image.width > 200:
                large.append(path)
    chosen = (large + [p for p in paths if p not in large])[:count]
    return [p.read_bytes() for p in chosen]


def networks():
    """(label, embedder) for the networks, random weights, each library's own preprocessing."""
    import timm
    import torch
    from timm.data import resolve_data_config
    from torchvision import models

    from curation_app.proposals.torch_embedders import TorchEmbedder, drop_head

    torch.manual_seed(0)
    for name in ("resnet50", "resnet18"):
        model = models.get_model(name, weights=None)
        drop_head(model, name)
        preset = models.get_model_weights(name).DEFAULT.transforms()
        yield f"torchvision:{name}", TorchEmbedder(name, name, model, resize=preset.resize_size[0],
                                                   crop=preset.crop_size[0])
    for name in ("vit_small_patch14_dinov2.lvd142m", "vit_small_patch16_224.augreg_in21k"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
        config = resolve_data_config({}, model=model)
        crop = config["input_size"][-1]
        yield f"timm:{name}", TorchEmbedder(name, name, model, resize=round(crop / config.get("crop_pct", 0.875)),
                                            crop=crop, mean=config["mean"], std=config["std"])
    for name in ("resnet18", "resnet50"):
        model = models.get_model(name, weights=None)
        drop_head(model, name)
        yield f"checkpoint-like {name}@64", TorchEmbedder(name, name, model, resize=64, crop=64)


def time_embedder(label: str, embedder, data: list[bytes]) -> tuple[float, float]:
    """(worker ms per image, model ms per image)."""
    preparer = embedder.preparer()
    started = time.process_time()
    prepared = [describe(d, "bench", preparer)[1] for d in data]
    worker = (time.process_time() - started) / len(data) * 1000
    batch = np.stack(prepared)
    embedder.embed(batch[:4])  # warm-up
    started = time.perf_counter()
    embedder.embed(batch)
    model = (time.perf_counter() - started) / len(data) * 1000
    return worker, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import timm
    import torch

    torch.set_num_threads(args.threads)
    data = photos(args.images)
    print(f"# {platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; torch {torch.__version__} "
          f"({args.threads} threads), timm {timm.__version__}; {len(data)} photos, mean {np.mean([len(d) for d in data]) / 1024:.0f} KB")
    print(f"{'embedder':<46} {'worker ms/img':>13} {'model ms/img':>12} {'total':>7}")
    rows = [("pixels", Embedder())] + list(networks())
    for label, embedder in rows:
        worker, model = time_embedder(label, embedder, data)
        print(f"{label:<46} {worker:>13.1f} {model:>12.1f} {worker + model:>7.1f}", flush=True)
    print("worker: CPU time of one worker process (read, decode, facts, the embedder's input); model: wall time of "
          f"embed() in the main process with {args.threads} torch threads. GPU: not measured (no GPU here).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
