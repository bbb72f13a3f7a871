"""A small VOCdevkit made from the bundled sample's full-resolution photos, with boxes drawn by
hand (by looking at each photo; fractions of width and height). It exercises the real detection
path offline: `reproduce table3 --smoke` and the detection tests train and score on it.
It is not VOC: 4 classes of ImageNet photos, 20 images, so its AP says nothing about a backbone.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image

SAMPLE_CLASSES = ("lion", "water_bottle", "bell_pepper", "goldfish")
# (wnid folder, file stem, class, [(x0, y0, x1, y1) as fractions, ...], difficult box indices)
BOXES = (
    ("n02129165", "n02129165_10881", "lion", [(0.40, 0.38, 0.60, 0.75), (0.42, 0.52, 0.96, 0.80)], ()),
    ("n02129165", "n02129165_16177", "lion", [(0.05, 0.05, 0.95, 1.00)], ()),
    ("n02129165", "n02129165_19260", "lion", [(0.00, 0.00, 0.80, 1.00)], ()),
    ("n02129165", "n02129165_2762", "lion", [(0.07, 0.38, 0.55, 0.95)], ()),
    ("n02129165", "n02129165_6654", "lion", [(0.08, 0.20, 0.55, 1.00), (0.50, 0.00, 0.85, 0.70)], ()),
    ("n04557648", "n04557648_2511", "water_bottle", [(0.42, 0.10, 0.58, 0.70)], ()),
    ("n04557648", "n04557648_2622", "water_bottle", [(0.78, 0.48, 0.85, 0.80)], ()),
    ("n04557648", "n04557648_4013", "water_bottle", [(0.15, 0.00, 0.48, 0.90), (0.48, 0.18, 0.92, 1.00)], ()),
    ("n04557648", "n04557648_8761", "water_bottle", [(0.25, 0.00, 0.92, 1.00)], ()),
    ("n04557648", "n04557648_9378", "water_bottle", [(0.28, 0.15, 0.75, 0.85)], (0,)),  # seen from above
    ("n07720875", "n07720875_1391", "bell_pepper", [(0.20, 0.05, 0.72, 0.95)], ()),
    ("n07720875", "n07720875_3114", "bell_pepper", [(0.18, 0.20, 0.42, 0.58), (0.72, 0.38, 1.00, 0.82)], ()),
    ("n07720875", "n07720875_5793", "bell_pepper",
     [(0.25, 0.55, 0.45, 0.90), (0.47, 0.52, 0.68, 0.95), (0.72, 0.55, 0.92, 0.93)], ()),
    ("n07720875", "n07720875_8857", "bell_pepper", [(0.30, 0.18, 0.68, 0.68)], ()),
    ("n07720875", "n07720875_9783", "bell_pepper", [(0.20, 0.00, 0.82, 0.85)], ()),
    ("n01443537", "n01443537_11099", "goldfish", [(0.28, 0.15, 0.92, 0.80)], ()),
    ("n01443537", "n01443537_2625", "goldfish", [(0.15, 0.00, 0.88, 0.65)], ()),
    ("n01443537", "n01443537_2675", "goldfish", [(0.35, 0.30, 1.00, 0.65), (0.00, 0.02, 0.30, 0.40)], ()),
    ("n01443537", "n01443537_4691", "goldfish", [(0.08, 0.00, 0.55, 0.50)], ()),
    ("n01443537", "n01443537_5048", "goldfish", [(0.05, 0.05, 0.95, 0.85)], ()),
)
# Per class, in BOXES order: first two -> VOC2007 trainval, third -> VOC2012 trainval, last two -> VOC2007 test.
SETS = ("VOC2007/trainval", "VOC2007/trainval", "VOC2012/trainval", "VOC2007/test", "VOC2007/test")


def _xml(stem: str, width: int, height: int, objects: list[tuple[str, tuple[int, int, int, int], bool]]) -> str:
    parts = [f"<annotation><filename>{escape(stem)}.jpg</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(f"<object><name>{escape(name)}</name><difficult>{int(difficult)}</difficult><bndbox>"
                     f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>\n"


def write_sample_devkit(imagenet_train: str | Path, out: str | Path) -> Path:
    """Write `out/VOCdevkit` (VOC2007 trainval/test, VOC2012 trainval) and return its path."""
    imagenet_train, devkit = Path(imagenet_train), Path(out) / "VOCdevkit"
    listings: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for wnid, stem, name, boxes, difficult in BOXES:
        position = seen.get(name, 0)
        seen[name] = position + 1
        year, image_set = SETS[position].split("/")
        source = imagenet_train / wnid / f"{stem}.JPEG"
        with Image.open(source) as image:
            width, height = image.size
        folder = devkit / year
        (folder / "JPEGImages").mkdir(parents=True, exist_ok=True)
        (folder / "Annotations").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / "JPEGImages" / f"{stem}.jpg")
        objects = []
        for number, (fx0, fy0, fx1, fy1) in enumerate(boxes):
            pixels = (max(1, round(fx0 * width) + 1), max(1, round(fy0 * height) + 1),
                      min(width, round(fx1 * width)), min(height, round(fy1 * height)))
            objects.append((name, pixels, number in difficult))
        (folder / "Annotations" / f"{stem}.xml").write_text(_xml(stem, width, height, objects))
        listings.setdefault(f"{year}/{image_set}", []).append(stem)
    for key, stems in listings.items():
        year, image_set = key.split("/")
        main = devkit / year / "ImageSets" / "Main"
        main.mkdir(parents=True, exist_ok=True)
        (main / f"{image_set}.txt").write_text("\n".join(stems) + "\n")
    return devkit
