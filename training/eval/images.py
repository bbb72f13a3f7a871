"""Decode one evaluation image to RGB, or say which file is bad and why.

Evaluation images come from Parquet cells (bytes) or from files in a folder. A bad one stops the
evaluation with a message naming it: silently dropping test images would change the metric.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from training.eval.errors import EvalError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".webp", ".bmp"})
# Pillow's default limit (about 9459 x 9459): a bigger image is refused, not decoded.
MAX_PIXELS = 89_478_485


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def decode_rgb(data: bytes | str | Path, where: str) -> Image.Image:
    """An RGB image with its EXIF orientation applied; `where` names it in error messages."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else open(data, "rb")
            with source:
                image = Image.open(source)
                if image.width * image.height > MAX_PIXELS:
                    raise EvalError(
                        f"{where}: {image.width}x{image.height} pixels is over the {MAX_PIXELS} limit"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                return image.convert("RGB")
    except EvalError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as error:
        raise EvalError(f"{where}: cannot be decoded as an image ({error})") from None
