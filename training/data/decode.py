"""Decode image bytes into square uint8 arrays, in worker processes.

Imports only Pillow and numpy, so spawned workers start in a fraction of a second. JPEG files are
decoded with Pillow's draft mode: the decoder scales by 1/2, 1/4 or 1/8 while decoding (DCT
scaling) to the smallest size that still covers the target, several times faster for full-size
ImageNet photos than a full decode followed by a resize.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps


def decode_square(data: bytes | None, path: str | None, size: int) -> np.ndarray:
    """(3, size, size) uint8 RGB: EXIF orientation applied, shorter side resized to `size` (bicubic,
    antialiased), centre crop. Raises on anything Pillow cannot read (the caller names the file)."""
    if not data and not path:
        raise ValueError("no bytes and no path")
    source = io.BytesIO(data) if data else path
    with Image.open(source) as image:
        image.draft("RGB", (size, size))  # JPEG only: both sides stay >= size
        image = ImageOps.exif_transpose(image)
        image = image.convert("RGB")
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_chunk(task: tuple[int, list[list[tuple[bytes | None, str | None]]], int]):
    """Worker entry point. task = (first row, rows of per-column (bytes, path), size).

    Returns (first row, uint8 (rows, columns, 3, size, size), errors [(row, column, message)])."""
    start, rows, size = task
    columns = len(rows[0]) if rows else 0
    out = np.zeros((len(rows), columns, 3, size, size), dtype=np.uint8)
    errors = []
    for i, row in enumerate(rows):
        for j, (data, path) in enumerate(row):
            try:
                out[i, j] = decode_square(data, path, size)
            except Exception as error:  # noqa: BLE001 - reported with the row and file by the caller
                errors.append((start + i, j, f"{type(error).__name__}: {error}"))
    return start, out, errors
