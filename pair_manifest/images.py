"""Safe image reading, used everywhere an image is touched.

Real ImageNet folders hold CMYK JPEGs, a PNG named `.JPEG`, truncated and empty files and the odd
stray text file. Every failure becomes an `ImageReadError` naming the file and a reason code; valid
but unusual files (CMYK, grayscale, PNG bytes, EXIF rotation) are read correctly instead.

`probe` is the cheap check a 1.28 M-file scan can afford (header + end-of-file marker, no pixel
decode); `open_rgb` is the full decode, with Pillow's JPEG draft mode when a small size will do.
"""
from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pair_manifest.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".webp", ".bmp"})
# Pillow's own default limit (about a 9459 x 9459 image). Bigger files are refused, not decoded:
# one 20000 x 20000 PNG would take 1.2 GB of RAM in every worker that opens it.
MAX_PIXELS = 89_478_485
_JPEG_END = b"\xff\xd9"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TAIL_BYTES = 4096

# Reason codes (stable: they appear in `scan --json` and in logs).
EMPTY = "empty"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_LARGE = "decompression_bomb"
UNREADABLE = "unreadable"


class ImageReadError(UserError):
    """An image file that cannot be used; `reason` is one of the codes above."""

    def __init__(self, path: str | Path, reason: str, detail: str):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}: {detail}")


@dataclass(frozen=True)
class ImageInfo:
    format: str  # what the bytes are ("JPEG", "PNG"), whatever the file name says
    width: int
    height: int
    mode: str


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def probe(path: str | Path) -> ImageInfo:
    """Header and end-of-file check without decoding pixels (fast enough for 1.28 M files)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise ImageReadError(path, EMPTY, "the file has zero bytes")
        with path.open("rb") as handle:
            info = _header_info(handle, path)
            handle.seek(max(0, size - _TAIL_BYTES))
            tail = handle.read()
    except OSError as error:
        raise ImageReadError(path, UNREADABLE, error.strerror or str(error)) from None
    if info.format == "JPEG" and _JPEG_END not in tail:
        raise ImageReadError(path, TRUNCATED, f"JPEG data ends without its end marker ({size} bytes)")
    if info.format == "PNG" and not tail.rstrip(b"\x00").endswith(_PNG_END.lstrip(b"\x00")):
        raise ImageReadError(path, TRUNCATED, f"PNG data ends without its IEND chunk ({size} bytes)")
    return info


# Every read path here refuses images over MAX_PIXELS itself (below), so Pillow's warning for
# images between its limit and twice its limit is only noise. Set once at import: toggling warning
# filters or Image.MAX_IMAGE_PIXELS per call would race in a threaded server.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _header_info(handle, path: Path) -> ImageInfo:
    with _opened(handle, path) as image:
        return ImageInfo(image.format or "?", image.width, image.height, image.mode)


def _opened(handle, path: Path) -> Image.Image:
    """`Image.open` with its failures (not an image, a bomb, a broken header) as ImageReadError."""
    try:
        image = Image.open(handle)
    except UnidentifiedImageError:
        raise ImageReadError(path, NOT_AN_IMAGE, "the bytes are not in any image format Pillow reads") from None
    except Image.DecompressionBombError as error:  # over twice Pillow's limit: it gives only the pixel count
        found = _BOMB_PIXELS.search(str(error))
        pixels = int(found.group(1)) if found else 0
        raise ImageReadError(path, TOO_LARGE, f"{pixels / 1e6:.0f} megapixels exceeds the limit of "
                                              f"{MAX_PIXELS / 1e6:.0f} megapixels") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(path, CORRUPT, str(error)) from None
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise ImageReadError(
            path, TOO_LARGE,
            f"{image.width}x{image.height} = {image.width * image.height / 1e6:.0f} megapixels exceeds the limit of "
            f"{MAX_PIXELS / 1e6:.0f} megapixels",
        )
    return image


def open_rgb(source: str | Path | bytes, *, name: str | None = None, max_side: int | None = None,
             exif_transpose: bool = False) -> Image.Image:
    """Decode to an RGB image, or raise `ImageReadError`.

    `max_side` lets JPEGs decode at 1/2, 1/4 or 1/8 scale (draft mode): a 500x375 photo needed at
    64 px decodes about 8x faster. `exif_transpose` is for display; training and the published
    bytes follow the ImageNet convention of ignoring the EXIF orientation.
    """
    rgb = _decode(source, name, "RGB", max_side, exif_transpose)
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return rgb


def open_grey(source: str | Path | bytes, *, name: str | None = None, min_side: int = 32) -> Image.Image:
    """Grey ("L") pixels, a JPEG decoded at the smallest draft scale that keeps both sides at least
    `min_side` (or the image's own size): what the perceptual hash needs. Luma only and 1/8 scale
    leave the entropy decoding as almost all the work: about half of `open_rgb(max_side=128)`."""
    return _decode(source, name, "L", min_side, False)


def _decode(source: str | Path | bytes, name: str | None, mode: str, draft_side: int | None,
            exif_transpose: bool) -> Image.Image:
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    if isinstance(source, bytes):
        if not source:
            raise ImageReadError(label, EMPTY, "the file has zero bytes")
        handle = io.BytesIO(source)
    else:
        try:
            if Path(source).stat().st_size == 0:
                raise ImageReadError(label, EMPTY, "the file has zero bytes")
            handle = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            raise ImageReadError(label, UNREADABLE, error.strerror or str(error)) from None
    try:
        with _opened(handle, Path(label)) as image:
            if draft_side and image.format == "JPEG":
                image.draft(mode, (draft_side, draft_side))
            try:
                image.load()
            except OSError as error:
                reason = TRUNCATED if "truncated" in str(error) else CORRUPT
                raise ImageReadError(label, reason, str(error)) from None
            except (SyntaxError, ValueError) as error:
                raise ImageReadError(label, CORRUPT, str(error)) from None
            if exif_transpose:
                image = ImageOps.exif_transpose(image)
            return image.convert(mode) if image.mode != mode else image.copy()
    finally:
        handle.close()


@dataclass(frozen=True)
class ImageFacts:
    """What the policy needs about one file: its bytes' SHA-256 and its perceptual hash."""

    sha256: str
    phash: "PerceptualHash"


def image_facts(path: str | Path, *, name: str | None = None) -> ImageFacts:
    """SHA-256 and perceptual hash of one file from a single read (raises ImageReadError)."""
    label = name or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageReadError(label, UNREADABLE, error.strerror or str(error)) from None
    return ImageFacts(sha256_bytes(data), perceptual_hash(open_grey(data, name=label, min_side=32)))


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Perceptual hash: 64-bit DCT hash (pHash). Re-encodes, resizes and small crops of one photo land
# within a few bits; a mirror image is caught by hashing the mirrored DCT (odd horizontal
# frequencies change sign under a left-right flip), computed from the same decode.


@dataclass(frozen=True)
class PerceptualHash:
    value: int
    mirrored: int

    def distance(self, other: "PerceptualHash") -> int:
        """Bits that differ, taking the closer of `other` and its mirror image (either way round,
        so the distance is symmetric)."""
        return min(hamming(self.value, other.value), hamming(self.value, other.mirrored),
                   hamming(self.mirrored, other.value))


NEAR_DUPLICATE_BITS = 10  # pHash literature uses ~10 of 64 bits for "same photo"


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT32 = _dct_matrix(32)
_MIRROR_SIGNS = np.array([1.0 if u % 2 == 0 else -1.0 for u in range(8)])[None, :]


def _bits(block: np.ndarray) -> int:
    """64 bits, the first coefficient the most significant: above the median or not."""
    flat = block.flatten()
    median = np.partition(flat[1:], 31)[31]  # of the 63 AC terms (the DC term says only "how bright")
    return int.from_bytes(np.packbits(flat > median).tobytes(), "big")


def perceptual_hash(image: Image.Image) -> PerceptualHash:
    gray = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
    block = (_DCT32 @ gray @ _DCT32.T)[:8, :8]
    return PerceptualHash(_bits(block), _bits(block * _MIRROR_SIGNS))
