"""Helpers for the evaluation tests: run folders in the training package's format, small copies
of the bundled CIFAR-10 sample, and the same sample as a Hub-layout Parquet folder.

A run folder here is written in the exact format the training loop writes (config.json with
`backbone` and `resolution`, checkpoints/last.pt with `eval_backbone`), holding a real network's
weights; no result is faked."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.backbones import BackboneSpec, build_backbone


def make_run(run_dir: Path, name: str = "resnet18", stem: str = "imagenet", resolution: int = 32,
             seed: int = 0, state_dict: dict | None = None) -> Path:
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if state_dict is None:
        torch.manual_seed(seed)
        model, _ = build_backbone(BackboneSpec(name, stem, resolution))
        state_dict = model.state_dict()
    torch.save({"eval_backbone": state_dict}, run_dir / "checkpoints" / "last.pt")
    config = {"backbone": {"name": name, "stem": stem, "image_size": resolution}, "resolution": resolution,
              "method": "simclr", "epochs": 1}
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def small_cifar(cifar_root: Path, out: Path, train_per_class: int = 20, test_per_class: int = 10) -> Path:
    """A copy of the first images of each class of the bundled sample, train/<class>/, test/<class>/."""
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for folder in sorted((cifar_root / split).iterdir()):
            target = out / split / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for file in sorted(folder.iterdir())[:count]:
                shutil.copyfile(file, target / file.name)
    return out


def hub_parquet(cifar_root: Path, out: Path, image_column: str = "img", label_column: str = "label",
                per_class: int = 10, subfolder: str = "plain_text") -> Path:
    """The sample in the layout of uoft-cs/cifar10 on the Hub: <config>/{train,test}-*.parquet,
    an Image column holding the original file bytes and a ClassLabel column."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    classes = sorted(p.name for p in (cifar_root / "train").iterdir())
    (out / subfolder).mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        rows = {image_column: [], label_column: []}
        for label, name in enumerate(classes):
            for file in sorted((cifar_root / split / name).iterdir())[:per_class]:
                rows[image_column].append({"bytes": file.read_bytes(), "path": None})
                rows[label_column].append(label)
        features = Features({image_column: ImageFeature(), label_column: ClassLabel(names=classes)})
        Dataset.from_dict(rows, features=features).to_parquet(str(out / subfolder / f"{split}-00000-of-00001.parquet"))
    return out


def pixel_features(cifar_root: Path, split: str, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Fixed, real features: each sample image as size x size grayscale pixels in [0, 1]."""
    classes = sorted(p.name for p in (cifar_root / "train").iterdir())
    x, y = [], []
    for label, name in enumerate(classes):
        for file in sorted((cifar_root / split / name).iterdir()):
            with Image.open(file) as image:
                gray = image.convert("L").resize((size, size), Image.BILINEAR)
            x.append(np.asarray(gray, dtype=np.float32).ravel() / 255)
            y.append(label)
    return np.stack(x), np.asarray(y, dtype=np.int64)


def seed_hub(hub, folder: Path, repo_id: str) -> int:
    """Put every file of `folder` into a new public dataset repo of the loopback Hub (one commit, as
    an upload would make it); returns the bytes stored."""
    from tests.support.loopback_hub import Blob, git_blob_sha1, is_lfs_path

    repo = hub.create_repo("dataset", repo_id, private=False)
    files, total = dict(repo.head.files), 0
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        name = path.relative_to(folder).as_posix()
        files[name] = Blob(hub.store(data), git_blob_sha1(data), len(data), lfs=is_lfs_path(name, data[:1024]))
        total += len(data)
    hub.new_commit(repo, "upload", "", files, added=sorted(files), deleted=[])
    return total
