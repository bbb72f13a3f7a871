"""Decode image bytes into whole photos on fixed canvases, in worker processes.

Each photo is kept whole (the random resized crop must see all of it, borders included, as
torchvision's `RandomResizedCrop` on the decoded photo does), with its aspect ratio, its shorter
side at SOURCE_SCALE x the training resolution: at that size about 95% of the crops the paper's
sampler draws (area 8-100%) are downsampled to the output, not upsampled (at 2x only about 80%).
It sits at the top-left of a square canvas of CANVAS_SCALE x the resolution, which holds a 4:3
photo (ILSVRC's usual shape) at full size; a more elongated one is scaled down to fit. Its valid
size (w, h) is returned beside the canvas. Canvases are height x width x RGB (as Pillow gives
them): the crop reads the three channels of a pixel with one index (training/crop.py).

Imports only Pillow and numpy, so spawned workers start in a fraction of a second. JPEG files are
decoded with Pillow's draft mode: the decoder scales by 1/2, 1/4 or 1/8 while decoding (DCT
scaling) to the smallest size that still covers the target, several times faster for full-size
ImageNet photos than a full decode followed by a resize.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

SOURCE_SCALE = 3  # shorter side of a cached photo, in units of the training resolution
CANVAS_SCALE = 4  # canvas side, likewise: a 4:3 photo fits at SOURCE_SCALE


def canvas_side(resolution: int) -> int:
    return CANVAS_SCALE * resolution


def fitted_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(w, h) of a photo in the cache: shorter side SOURCE_SCALE x resolution, aspect kept, scaled
    down further if its longer side would leave the canvas."""
    scale = min(SOURCE_SCALE * resolution / min(width, height), canvas_side(resolution) / max(width, height))
    side = canvas_side(resolution)
    return min(side, max(1, round(width * scale))), min(side, max(1, round(height * scale)))


def decode_photo(data: bytes | None, path: str | None, resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 (S, S, 3) canvas with the photo at its top-left, (w, h) of the photo there), S =
    canvas_side(resolution). RGB, EXIF orientation applied, bicubic antialiased resize. Raises on
    anything Pillow cannot read (the caller names the file)."""
    if not data and not path:
        raise ValueError("no bytes and no path")
    source = io.BytesIO(data) if data else path
    side = canvas_side(resolution)
    with Image.open(source) as image:
        shorter = SOURCE_SCALE * resolution
        image.draft("RGB", (shorter, shorter))  # JPEG only: both sides stay >= the requested size
        image = ImageOps.exif_transpose(image)
        image = image.convert("RGB")
        w, h = fitted_size(image.width, image.height, resolution)
        if (w, h) != image.size:
            image = image.resize((w, h), Image.Resampling.BICUBIC)
        canvas = np.zeros((side, side, 3), dtype=np.uint8)
        canvas[:h, :w] = np.asarray(image, dtype=np.uint8)
        return canvas, (w, h)


def decode_chunk(task: tuple[int, list[list[tuple[bytes | None, str | None]]], int]):
    """Worker entry point. task = (first row, rows of per-column (bytes, path), resolution).

    Returns (first row, uint8 (rows, columns, S, S, 3) canvases, int16 (rows, columns, 2) sizes,
    errors [(row, column, message)])."""
    start, rows, resolution = task
    columns = len(rows[0]) if rows else 0
    side = canvas_side(resolution)
    out = np.zeros((len(rows), columns, side, side, 3), dtype=np.uint8)
    sizes = np.zeros((len(rows), columns, 2), dtype=np.int16)
    errors = []
    for i, row in enumerate(rows):
        for j, (data, path) in enumerate(row):
            try:
                out[i, j], sizes[i, j] = decode_photo(data, path, resolution)
            except Exception as error:  # noqa: BLE001 - reported with the row and file by the caller
                errors.append((start + i, j, f"{type(error).__name__}: {error}"))
    return start, out, sizes, errors
