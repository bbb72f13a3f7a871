"""Helpers of the proposals tests: a copy of the real sample with planted near-duplicates."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, ImageOps

from pair_manifest.images import open_rgb

# Classes mixing full-resolution ILSVRC photos with 64x64 ones; planted copies go in both sizes.
PLANT_CLASSES = ("n03085013", "n02129165")
SUBSET = ("n01443537", "n02129165", "n03085013", "n03417042", "n04554684", "n07720875")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h)))


VARIANTS = {  # name -> bytes of a near-duplicate of one photo
    "copy": lambda data, im: data,  # the same bytes under another name
    "q20": lambda data, im: jpeg(im, 20),
    "half": lambda data, im: jpeg(im.resize((max(16, im.width // 2), max(16, im.height // 2)))),
    "mirror": lambda data, im: jpeg(ImageOps.mirror(im)),
    "crop": lambda data, im: jpeg(crop(im, 0.06, 0.02, 0.03, 0.07)),
    "left": lambda data, im: jpeg(crop(im, 0.10, 0.0, 0.0, 0.0)),
    "mirror_crop_q30": lambda data, im: jpeg(ImageOps.mirror(crop(im, 0.03, 0.05, 0.07, 0.02)), 30),
}


def plant_duplicates(root: Path, wnid: str, originals: list[str]) -> dict[str, list[str]]:
    """Write every variant of each original into the class folder; returns original -> copies
    (file ids `<wnid>/<name>`)."""
    planted = {}
    for name in originals:
        path = root / wnid / name
        data = path.read_bytes()
        image = open_rgb(data)
        copies = []
        for variant, make in VARIANTS.items():
            target = path.with_name(f"{path.stem}_{variant}.JPEG")
            target.write_bytes(make(data, image))
            copies.append(f"{wnid}/{target.name}")
        planted[f"{wnid}/{name}"] = copies
    return planted


def copy_classes(sample: Path, target: Path, wnids=SUBSET) -> Path:
    for wnid in wnids:
        shutil.copytree(sample / wnid, target / wnid)
    return target


def classes_csv(path: Path, wnids) -> Path:
    path.write_text("wnid\n" + "".join(f"{w}\n" for w in wnids))
    return path


def read_rows(project: Path) -> list[dict]:
    return pq.read_table(project / "proposals.parquet").to_pylist()


def full_resolution(root: Path, wnid: str, count: int) -> list[str]:
    names = []
    for path in sorted((root / wnid).iterdir()):
        with Image.open(path) as image:
            if image.width > 200:
                names.append(path.name)
    return names[:count]


def small(root: Path, wnid: str, count: int) -> list[str]:
    names = []
    for path in sorted((root / wnid).iterdir()):
        with Image.open(path) as image:
            if image.width == 64 and image.mode == "RGB":
                names.append(path.name)
    return names[:count]
