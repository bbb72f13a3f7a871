"""`reproduce NAME --smoke`: the same chain (experiment file -> runs -> evaluations -> table and
figure) on CPU in minutes, on the bundled sample. Its numbers say nothing about the paper.

What changes, and only this:
- data: an SP/AP release built from `sample_data/imagenet` by the project's own manifest importer
  and release builder (what `semantic-pairs manifest import` + `build` run), pairing consecutive files of each class (real photos
  of one class, NOT curated semantic pairs; 334 pairs, so the 50/100/157 subsets coincide);
  Tiny-ImageNet is `sample_data/tiny_imagenet` (300 images);
- evaluation: every classification dataset is the bundled CIFAR-10 sample (600 train / 300 test);
  CIFAR-100 and STL-10 cannot be downloaded offline, so the CIFAR-10 sample stands in for them and
  the output says so; detection runs on a 20-image VOC-format folder with hand-drawn boxes;
- runs: ViT-tiny/8 (ResNet-18 where detection needs a ResNet) at 32x32, batch 32, a handful of
  steps, narrow heads;
- evaluations: a shorter weight-decay sweep, one fine-tuning epoch, two detection iterations.
"""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "sample_data"
STANDS_IN = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "stl10": "STL-10"}

RESOLUTION = 32
BATCH_SIZE = 32
STEPS = 4
# ViT-tiny/8 (2 layers, width 64) trains and evaluates in a fraction of a second per step on a CPU;
# detection needs a ResNet (its C4 layers), so runs evaluated by detection use ResNet-18.
SMALL_BACKBONE = "vit_tiny8"
DETECTION_BACKBONE = "resnet18"
# Narrow heads so a CPU step takes a fraction of a second (the full widths are GPU-sized), and no
# warm-up (a 4-step run would never leave it). Every other value is the method's paper default.
METHOD_HP = {
    "simclr": {"warmup_epochs": 0},
    "byol": {"projection_hidden": 256, "prediction_hidden": 256, "warmup_epochs": 0},
    "dino": {"out_dim": 256, "head_hidden": 128, "head_bottleneck": 32, "warmup_epochs": 0},
    "vicreg": {"projector": (128, 128), "warmup_epochs": 0},
    "mocov2": {"queue_size": 64, "dim": 32},
    "simsiam": {"projector_dim": 128, "predictor_hidden": 32},
    "barlow_twins": {"projector": (128, 128), "warmup_epochs": 0},
    "swav": {"projector_hidden": 128, "projector_dim": 32, "prototypes": 30, "queue_length": 0},
}
LINEAR_WEIGHT_DECAYS = (1e-4, 1e-2, 1.0)
FINETUNE_EPOCHS = 1
DETECTION = dict(iterations=2, batch_size=2, base_lr=0.02 * 8, warmup_iterations=2, min_sizes_train=(96, 128),
                 min_size_test=128, max_size=192, rpn_pre_nms_train=300, rpn_post_nms_train=64,
                 rpn_pre_nms_test=200, rpn_post_nms_test=32, rpn_batch_per_image=64, roi_batch_per_image=16)


def smoke_run(spec, evaluation_kind: str | None):
    """The smoke version of a run spec: a small backbone (the run's name changes with it)."""
    return replace(spec, backbone=DETECTION_BACKBONE if evaluation_kind == "detection" else SMALL_BACKBONE)


def consecutive_pairs(images: Path) -> list[dict]:
    """Consecutive files (sorted names) of each class as pairs: NOT curated, for smoke runs only."""
    rows = []
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for i in range(0, len(names) - 1, 2):
            rows.append({"wnid": folder.name, "file_a": f"{folder.name}/{names[i]}", "file_b": f"{folder.name}/{names[i + 1]}"})
    return rows


def sample_release(data_dir: Path, images: Path = SAMPLE / "imagenet" / "train") -> Path:
    """The SP/AP release of the bundled sample (or of another `train/<wnid>/` folder), built once
    into DATA_DIR/semantic_pairs by the project's own manifest importer and release builder (the
    functions behind `semantic-pairs manifest import` and `build`; the rest of `training` needs
    nothing from them: smoke mode is the one place that makes its own data)."""
    from builders.build import build_release
    from builders.plan import BuildSettings
    from pair_manifest.classes import load_selection
    from pair_manifest.importer import import_pairs

    release = data_dir / "semantic_pairs"
    if (release / "README.md").is_file():
        return release
    data_dir.mkdir(parents=True, exist_ok=True)
    pairs = data_dir / "consecutive_pairs.csv"
    with pairs.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["wnid", "file_a", "file_b"])
        writer.writeheader()
        writer.writerows(consecutive_pairs(images))
    manifest = data_dir / "manifest"
    if not (manifest / "pairs.parquet").is_file():
        import_pairs(pairs, images, manifest, load_selection())
    build_release(manifest, images, release, BuildSettings(), allow_short=True)
    return release


def sample_voc(data_dir: Path) -> Path:
    from training.eval.voc_sample import write_sample_devkit

    devkit = data_dir / "voc" / "VOCdevkit"
    if not (devkit / "VOC2007" / "ImageSets" / "Main" / "test.txt").is_file():
        write_sample_devkit(SAMPLE / "imagenet" / "train", data_dir / "voc")
    return devkit


def sample_dataset(name: str) -> tuple[str, str]:
    """(dataset path, label) that stands in for an evaluation dataset in smoke mode."""
    path = str(SAMPLE / "cifar10")
    if name == "cifar10":
        return path, "bundled CIFAR-10 sample"
    if name in STANDS_IN:
        return path, f"bundled CIFAR-10 sample standing in for {STANDS_IN[name]} (not available offline)"
    return path, f"bundled CIFAR-10 sample standing in for {name}"
