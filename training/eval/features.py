"""Frozen-backbone features, computed once per (checkpoint, dataset, split) and cached on disk.

The linear probe and kNN (paper §4, "we froze the backbone") read the same cached features, so a
second evaluation of a run costs no forward passes. Images are resized to the pretraining
resolution (shorter side, then a centre crop: a plain resize for the square CIFAR/STL images),
normalized with the run's statistics, and passed through the backbone in eval mode.
The cache key is the SHA-256 of the checkpoint file plus the dataset split's fingerprint and the
preprocessing, so retraining or changing the data invalidates it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pair_manifest.atomic import write_atomically
from training.progress import progress

from training.eval.datasets import EvalDataset, Split
from training.eval.runs import EvalRun

FEATURE_FORMAT = 1  # bump when the extraction changes, so old caches are not reused


@dataclass
class Features:
    x: torch.Tensor  # (N, D) float32, CPU
    y: torch.Tensor  # (N,) int64, CPU


class ResizedImages(torch.utils.data.Dataset):
    """(3, S, S) uint8 tensors at the pretraining size, decoded in DataLoader workers."""

    def __init__(self, split: Split, size: int):
        self.split = split
        self.size = size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        image = resize_square(self.split.image(index), self.size)
        array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        return array, int(self.split.labels[index])


def resize_square(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size` (bicubic), then the centre `size` x `size` square."""
    width, height = image.size
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new != (width, height):
        image = image.resize(new, Image.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def default_workers(count: int) -> int:
    """Decoding small sets in the main process beats starting workers."""
    return 0 if count < 2000 else min(8, os.cpu_count() or 1)


def image_loader(split: Split, size: int, batch_size: int, workers: int | None = None,
                 shuffle: bool = False) -> DataLoader:
    workers = default_workers(len(split)) if workers is None else workers
    return DataLoader(
        ResizedImages(split, size), batch_size=batch_size, shuffle=shuffle, num_workers=workers,
        pin_memory=torch.cuda.is_available(), persistent_workers=False,
    )


def normalize(batch: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, 3, S, S) on any device -> normalized float32."""
    mean = torch.tensor(mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=batch.device).view(1, 3, 1, 1)
    return (batch.float().div_(255) - mean) / std


@torch.no_grad()
def extract(run: EvalRun, split: Split, device: torch.device, batch_size: int = 256,
            workers: int | None = None) -> Features:
    """Features of every image of a split, in order, through the frozen backbone in eval mode."""
    model = run.backbone.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    chunks, labels = [], []
    loader = image_loader(split, run.resolution, batch_size, workers)
    bar = progress(len(loader), f"features {split.where}", "batch")
    for images, y in loader:
        bar.update(1)
        images = normalize(images.to(device, non_blocking=True), run.mean, run.std)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        chunks.append(model(images).float().cpu())
        labels.append(y)
    bar.close()
    return Features(torch.cat(chunks), torch.cat(labels).long())


def cache_key(run: EvalRun, split: Split) -> str:
    fields = {
        "format": FEATURE_FORMAT, "checkpoint": run.checkpoint_sha256, "split": split.fingerprint,
        "where": split.where, "resolution": run.resolution, "mean": list(run.mean), "std": list(run.std),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cached_features(run: EvalRun, dataset: EvalDataset, split_name: str, device: torch.device,
                    batch_size: int = 256, workers: int | None = None) -> tuple[Features, bool]:
    """(features, whether they came from the cache) for `train` or `test` of a dataset."""
    split = getattr(dataset, split_name)
    key = cache_key(run, split)
    path = run.eval_dir / "cache" / f"features-{dataset.slug}-{split_name}-{key[:16]}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.get("key") == key and stored["x"].shape[0] == len(split):
                return Features(stored["x"], stored["y"]), True
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
            pass
    features = extract(run, split, device, batch_size, workers)
    buffer = io.BytesIO()
    torch.save({"key": key, "x": features.x, "y": features.y}, buffer)
    try:
        write_atomically(path, lambda handle: handle.write(buffer.getbuffer()))
    except OSError as error:  # the cache is an optimization: evaluate without it
        print(f"note: {path}: the feature cache could not be written ({error.strerror or error})", file=sys.stderr)
    return features, False


def pick_device(name: str = "auto") -> torch.device:
    """`auto` is the GPU when one is present (the paper's setting), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from training.eval.errors import EvalError

        raise EvalError(f"--device {name}: no CUDA device is available here")
    return torch.device(name)
