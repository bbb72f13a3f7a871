"""PASCAL VOC detection data (paper §4.3: VOC07+12 trainval -> VOC07 test, as MoCo v2).

Two sources:
- a local `VOCdevkit/` folder: `VOC2007/` and `VOC2012/`, each with `Annotations/*.xml`,
  `ImageSets/Main/{trainval,test}.txt` and `JPEGImages/*.jpg` (the layout of the official tars);
- a Hub id or local Parquet folder that `datasets.load_dataset` reads, with splits `train` (or
  `trainval`) and `test`, an `image` column and an `objects` column holding `bbox` (xmin, ymin,
  xmax, ymax in pixels, 0-based), `category` (class index) and optionally `difficult`.
Boxes are kept in 0-based continuous coordinates, as detectron2 reads VOC (xmin - 1, ymin - 1,
xmax, ymax from the 1-based inclusive XML), and "difficult" objects are kept for training and
ignored by the evaluation, also as detectron2 does.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.eval.errors import EvalError
from training.eval.images import decode_rgb

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
# MoCo v2's detection protocol: train on VOC2007 trainval + VOC2012 trainval, test on VOC2007 test.
TRAIN_SETS = (("VOC2007", "trainval"), ("VOC2012", "trainval"))
TEST_SETS = (("VOC2007", "test"),)


@dataclass
class Annotation:
    where: str  # file or row, for messages
    boxes: np.ndarray  # (K, 4) float32, 0-based xmin, ymin, xmax, ymax
    labels: np.ndarray  # (K,) int64 in 1..C (0 is the background)
    difficult: np.ndarray  # (K,) bool


@dataclass
class DetectionSplit:
    where: str
    classes: tuple[str, ...]
    annotations: list[Annotation]
    images: list  # per item: a Path, or (datasets.Dataset, row, column)

    def __len__(self) -> int:
        return len(self.annotations)

    def image(self, index: int):
        source = self.images[index]
        if isinstance(source, Path):
            return decode_rgb(source, str(source))
        table, row, column = source
        cell = table[row][column]
        return decode_rgb(cell.get("bytes") or cell.get("path"), f"{self.where} row {row}")


@dataclass
class DetectionData:
    name: str
    slug: str
    classes: tuple[str, ...]
    train: DetectionSplit
    test: DetectionSplit


def parse_annotation(path: Path, classes: tuple[str, ...]) -> Annotation:
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise EvalError(f"{path}: cannot be read as VOC XML ({error})") from None
    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in classes:
            raise EvalError(f"{path}: object {number} has class '{name}', not one of the {len(classes)} classes "
                            f"(pass --classes for a dataset with other classes)")
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise EvalError(f"{path}: object {number} ('{name}') has no valid bndbox") from None
        if not (xmax > xmin - 1 and ymax > ymin - 1):
            raise EvalError(f"{path}: object {number} ('{name}') has an empty box {xmin, ymin, xmax, ymax}")
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        labels.append(classes.index(name) + 1)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return Annotation(
        where=str(path), boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64), difficult=np.asarray(difficult, dtype=bool),
    )


def _devkit_split(root: Path, sets, classes) -> DetectionSplit:
    annotations, images = [], []
    for year, image_set in sets:
        folder = root / year
        listing = folder / "ImageSets" / "Main" / f"{image_set}.txt"
        if not listing.is_file():
            raise EvalError(f"{root}: missing {listing.relative_to(root)} (expected a VOCdevkit folder)")
        for image_id in listing.read_text().split():
            annotation = parse_annotation(folder / "Annotations" / f"{image_id}.xml", classes)
            image = folder / "JPEGImages" / f"{image_id}.jpg"
            if not image.is_file():
                raise EvalError(f"{image}: listed in {listing.name} but missing")
            annotations.append(annotation)
            images.append(image)
    names = "+".join(f"{year[3:]}{s}" for year, s in sets)
    return DetectionSplit(where=f"{root}:{names}", classes=classes, annotations=annotations, images=images)


def _hub_split(name: str, table, classes) -> DetectionSplit:
    for column in ("image", "objects"):
        if column not in table.column_names:
            raise EvalError(f"--dataset {name}: no '{column}' column among {table.column_names}")
    import datasets

    table = table.cast_column("image", datasets.Image(decode=False))
    annotations, images = [], []
    for row, objects in enumerate(table["objects"]):
        where = f"{name} row {row}"
        try:
            boxes = np.asarray(objects["bbox"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(objects["category"], dtype=np.int64) + 1
        except (KeyError, TypeError, ValueError):
            raise EvalError(f"{where}: 'objects' needs 'bbox' (N x 4) and 'category' lists") from None
        if labels.size and (labels.min() < 1 or labels.max() > len(classes)):
            raise EvalError(f"{where}: category outside 0..{len(classes) - 1}")
        difficult = np.asarray(objects.get("difficult") or [0] * len(labels), dtype=bool)
        annotations.append(Annotation(where, boxes, labels, difficult))
        images.append((table, row, "image"))
    return DetectionSplit(where=name, classes=classes, annotations=annotations, images=images)


def open_detection(name: str, classes: tuple[str, ...] | None = None) -> DetectionData:
    """A VOCdevkit folder (VOC07+12 trainval / VOC07 test) or a Hub-layout detection dataset."""
    from training.eval.datasets import dataset_slug

    path = Path(name)
    if path.is_dir() and (path / "VOC2007").is_dir():
        classes = tuple(classes or VOC_CLASSES)
        sets = [s for s in TRAIN_SETS if (path / s[0]).is_dir()]
        return DetectionData(name, dataset_slug(name), classes, _devkit_split(path, sets, classes),
                             _devkit_split(path, TEST_SETS, classes))
    import datasets

    try:
        loaded = datasets.load_dataset(name)
    except Exception as error:  # noqa: BLE001 - any loading failure is the user's data or network
        raise EvalError(f"--dataset {name}: neither a VOCdevkit folder (with VOC2007/) nor a loadable dataset "
                        f"({type(error).__name__}: {error})") from None
    train_name = next((s for s in ("trainval", "train") if s in loaded), None)
    if train_name is None or "test" not in loaded:
        raise EvalError(f"--dataset {name}: has splits {sorted(loaded)}, needs train (or trainval) and test")
    if classes is None:  # the class names of a ClassLabel `category` (a List of ClassLabel), else VOC's
        objects = loaded[train_name].features.get("objects")
        category = objects.get("category") if isinstance(objects, dict) else None
        names = getattr(getattr(category, "feature", category), "names", None)
        classes = tuple(names) if names else VOC_CLASSES
    classes = tuple(classes)
    return DetectionData(name, dataset_slug(name), classes, _hub_split(f"{name}:{train_name}", loaded[train_name], classes),
                         _hub_split(f"{name}:test", loaded["test"], classes))


class DetectionImages(torch.utils.data.Dataset):
    """(float image (3, H, W) in [0, 1], target dict) with an optional random horizontal flip."""

    def __init__(self, split: DetectionSplit, flip: bool, seed: int = 0):
        self.split = split
        self.flip = flip
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        image = np.asarray(self.split.image(index), dtype=np.uint8)
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255)
        annotation = self.split.annotations[index]
        boxes = torch.from_numpy(annotation.boxes.copy())
        if self.flip and torch.rand(1).item() < 0.5:
            width = tensor.shape[-1]
            tensor = tensor.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
        return tensor, {"boxes": boxes, "labels": torch.from_numpy(annotation.labels.copy()), "index": index}


def collate(batch):
    images, targets = zip(*batch)
    return list(images), list(targets)
