"""Classification datasets for transfer evaluation (paper §4: CIFAR-10, CIFAR-100, STL-10).

`open_dataset(NAME_OR_PATH)` returns the train and test splits of
- a short name: cifar10 -> `uoft-cs/cifar10` (img/label), cifar100 -> `uoft-cs/cifar100`
  (img/fine_label), stl10 -> `tanganke/stl10` (image/label), loaded with `datasets.load_dataset`;
- a local folder `train/<class>/*`, `test/<class>/*` (classes are the sorted folder names);
- any other local folder or Hub id that `load_dataset` reads (Parquet in the Hub layout), with
  its image and label columns found by name or given explicitly.
Images are decoded lazily, one at a time, so a 50k-image set never sits in memory as PIL images.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pair_manifest.protocol import EVAL_DATASETS
from training.eval.errors import EvalError
from training.eval.images import decode_rgb, is_image_file


@dataclass(frozen=True)
class HubSpec:
    repo_id: str
    image_column: str
    label_column: str


# The paper's transfer datasets (§4) and their public Parquet copies on the Hub, with the columns
# their cards declare (checked against the Hub's dataset pages and the TFDS community catalog):
# - uoft-cs/cifar10: the canonical CIFAR-10 repo (the old id `cifar10` redirects there), config
#   `plain_text`, `img` (Image) and `label` (ClassLabel, 10 names), 50,000 train / 10,000 test;
# - uoft-cs/cifar100: `img`, `fine_label` (100 classes, the paper's) and `coarse_label` (20),
#   50,000 / 10,000;
# - tanganke/stl10: no organisation publishes STL-10 on the Hub; this Parquet copy of the labelled
#   splits has `image` (96x96) and `label` (ClassLabel, 10 names), 5,000 train / 8,000 test
#   (`data/{train,test}-*.parquet`), the splits of the original release.
KNOWN_DATASETS = {
    "cifar10": HubSpec("uoft-cs/cifar10", "img", "label"),
    "cifar100": HubSpec("uoft-cs/cifar100", "img", "fine_label"),
    "stl10": HubSpec("tanganke/stl10", "image", "label"),
}
if set(KNOWN_DATASETS) != set(EVAL_DATASETS):
    raise ImportError(f"training.eval.datasets knows {sorted(KNOWN_DATASETS)}, the protocol names {EVAL_DATASETS}")
IMAGE_COLUMNS = ("img", "image")
LABEL_COLUMNS = ("label", "fine_label", "labels")
SPLITS = ("train", "test")


@dataclass
class Split:
    """One split: labels up front, images decoded on demand by index."""

    where: str  # "<dataset>:<split>", for messages
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) int64
    fingerprint: str  # changes whenever the split's content may have changed
    files: list[Path] | None = None  # folder splits
    table: object = None  # Hub splits: a `datasets.Dataset` with its image column undecoded
    image_column: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def image(self, index: int) -> Image.Image:
        if self.files is not None:
            path = self.files[index]
            return decode_rgb(path, str(path))
        cell = self.table[int(index)][self.image_column]
        where = f"{self.where} row {index}"
        if isinstance(cell, dict):
            data = cell.get("bytes") or cell.get("path")
            if not data:
                raise EvalError(f"{where}: column '{self.image_column}' holds neither bytes nor a path")
            return decode_rgb(data, where)
        if isinstance(cell, Image.Image):
            return cell.convert("RGB")
        raise EvalError(f"{where}: column '{self.image_column}' is not an image ({type(cell).__name__})")


@dataclass
class EvalDataset:
    name: str  # what the user asked for
    slug: str  # file-name-safe, used in `eval/<kind>-<slug>.json`
    train: Split
    test: Split

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes


def dataset_slug(name: str) -> str:
    """`cifar10` -> `cifar10`, `/data/my_set/` -> `my_set`, `org/name` -> `org__name`."""
    path = Path(name)
    text = path.name if path.exists() else name.strip("/").replace("/", "__")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "dataset"


def open_dataset(name: str, image_column: str | None = None, label_column: str | None = None) -> EvalDataset:
    """Resolve a short name, a local class-folder tree, or anything `load_dataset` reads."""
    if name in KNOWN_DATASETS:
        spec = KNOWN_DATASETS[name]
        return _open_hub(name, spec.repo_id, image_column or spec.image_column, label_column or spec.label_column)
    path = Path(name)
    if path.is_dir() and (path / "train").is_dir() and _has_class_folders(path / "train"):
        return _open_folder(path)
    if path.exists() and not path.is_dir():
        raise EvalError(f"--dataset {name}: is a file; expected a folder with train/<class>/ and test/<class>/, or a Hub id")
    return _open_hub(name, name, image_column, label_column)


def _has_class_folders(folder: Path) -> bool:
    return any(child.is_dir() for child in folder.iterdir())


def _open_folder(root: Path) -> EvalDataset:
    if not (root / "test").is_dir():
        raise EvalError(f"{root}: has train/ but no test/ folder (expected train/<class>/ and test/<class>/)")
    classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith(".")))
    splits = {}
    for split in SPLITS:
        files, labels = [], []
        for child in sorted((root / split).iterdir()):
            if not child.is_dir() or child.name.startswith("."):
                continue
            if child.name not in classes:
                raise EvalError(f"{child}: class '{child.name}' is not among the train classes")
            found = sorted(f for f in child.iterdir() if f.is_file() and is_image_file(f))
            files += found
            labels += [classes.index(child.name)] * len(found)
        if not files:
            raise EvalError(f"{root / split}: no images found in its class folders")
        digest = hashlib.sha256()
        for f in files:
            stat = f.stat()
            digest.update(f"{f.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        splits[split] = Split(
            where=f"{root}:{split}", classes=classes, labels=np.asarray(labels, dtype=np.int64),
            fingerprint=digest.hexdigest(), files=files,
        )
    return EvalDataset(name=str(root), slug=dataset_slug(str(root)), train=splits["train"], test=splits["test"])


def _open_hub(name: str, repo_id: str, image_column: str | None, label_column: str | None) -> EvalDataset:
    import datasets  # heavy: imported only when a Hub-style dataset is used

    try:
        loaded = datasets.load_dataset(repo_id)
    except Exception as error:  # noqa: BLE001 - any loading failure is the user's data or network
        raise EvalError(f"--dataset {name}: cannot be loaded as '{repo_id}' ({type(error).__name__}: {error})") from None
    missing = [s for s in SPLITS if s not in loaded]
    if missing:
        raise EvalError(f"--dataset {name}: has splits {sorted(loaded)}, needs {', '.join(SPLITS)}")
    columns = loaded["train"].column_names
    image_column = image_column or next((c for c in IMAGE_COLUMNS if c in columns), None)
    label_column = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
    for what, column in (("image", image_column), ("label", label_column)):
        if column is None or column not in columns:
            raise EvalError(f"--dataset {name}: no {what} column among {columns} (pass --{what}-column)")
    feature = loaded["train"].features[label_column]
    names = getattr(feature, "names", None)
    splits = {}
    for split in SPLITS:
        table = loaded[split].cast_column(image_column, datasets.Image(decode=False))
        labels = np.asarray(table[label_column], dtype=np.int64)
        table = table.select_columns([image_column])  # row access then reads only the image bytes
        splits[split] = Split(
            where=f"{name}:{split}", classes=(), labels=labels, fingerprint=table._fingerprint,
            table=table, image_column=image_column,
        )
    if names is None:  # plain integer labels: classes are the values seen in train
        count = int(max(splits["train"].labels.max(), splits["test"].labels.max())) + 1
        names = [str(i) for i in range(count)]
    for split in splits.values():
        split.classes = tuple(names)
        bad = (split.labels < 0) | (split.labels >= len(names))
        if bad.any():
            raise EvalError(f"{split.where}: label {int(split.labels[bad][0])} is outside 0..{len(names) - 1}")
    return EvalDataset(name=name, slug=dataset_slug(name), train=splits["train"], test=splits["test"])
