"""The embedder interface, its SPEC strings, and the `pixels` embedder (the interface's default).

An embedder gives each image an *object* vector. The *context* vector is always the pixels
description of the outer band (`pixels.py`), whatever the embedder: it is cheap, and one
definition of context keeps scores of different embedders comparable.

Work is split in two so that decoding runs in worker processes and a model runs once, batched,
in the main process: `prepare(data, thumbnail)` (picklable, worker side; `None` for `pixels`, whose
object vector the worker computes from the image it decodes anyway) and `embed(batch)`.

This module imports neither torch nor any embedder implementation: `torch_embedders` builds on
it, and `embedders.load_embedder` picks an implementation for a SPEC.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from pair_manifest.errors import UserError

DEFAULT_SPEC = "pixels"
KINDS = ("pixels", "torchvision", "timm", "checkpoint")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")

Preparer = Callable[[bytes, Image.Image], np.ndarray]


@dataclass(frozen=True)
class EmbedderSpec:
    kind: str
    name: str = ""  # model name (torchvision, timm) or run folder (checkpoint)
    weights: str | None = None  # torchvision only: a local state-dict file

    def __str__(self) -> str:
        if self.kind == "pixels":
            return "pixels"
        return f"{self.kind}:{self.name}" + (f"@{self.weights}" if self.weights else "")


def parse_spec(text: str) -> EmbedderSpec:
    """`pixels`, `torchvision:NAME[@FILE]`, `timm:NAME` or `checkpoint:RUN_DIR`; anything else is
    refused with a message saying what was expected."""
    text = (text or "").strip()
    kind, _, rest = text.partition(":")
    expected = "expected pixels, torchvision:NAME[@WEIGHTS_FILE], timm:NAME or checkpoint:RUN_DIR"
    if kind not in KINDS:
        raise UserError(f"--embedder '{text}': unknown kind '{kind}' ({expected})")
    if kind == "pixels":
        if rest:
            raise UserError(f"--embedder '{text}': pixels takes no argument ({expected})")
        return EmbedderSpec("pixels")
    if not rest:
        raise UserError(f"--embedder '{text}': {kind} needs an argument ({expected})")
    if kind == "checkpoint":
        return EmbedderSpec("checkpoint", rest)
    name, at, weights = rest.partition("@")
    if not _MODEL_NAME.match(name):
        raise UserError(f"--embedder '{text}': '{name}' is not a model name ({expected})")
    if at and kind == "timm":
        raise UserError(f"--embedder '{text}': timm takes a model name only; its weights come from the Hugging Face Hub")
    if at and not weights:
        raise UserError(f"--embedder '{text}': '@' must be followed by a weights file")
    return EmbedderSpec(kind, name, weights or None)


def safe_label(text: str) -> str:
    """A label fit for the decision source 'proposal:<label>:<rank>': no ':' and no white space."""
    return re.sub(r"[:\s]+", "_", text)


class Embedder:
    """The interface (and the `pixels` embedder itself).

    `label` names the embedder in proposals.parquet and in decision sources; `cache_key` names
    the vectors (feature version, weights hash) so changed features are never mixed with stale
    ones; `standardize` is how scoring normalises object vectors within a class: `zscore` for
    the hand-made pixels features, whose dimensions have unrelated units (z-scored, each block of
    `pixels.OBJECT_BLOCKS` weighted equally), `center` for network features (unit length, centred)."""

    label = "pixels"
    standardize = "zscore"

    def __init__(self) -> None:
        from curation_app.proposals.pixels import FEATURE_VERSION

        self.cache_key = f"pixels/v{FEATURE_VERSION}"

    def preparer(self) -> Preparer | None:
        return None

    def embed(self, prepared: np.ndarray) -> np.ndarray:
        return np.asarray(prepared, dtype=np.float32)


@dataclass(frozen=True)
class CropPreparer:
    """Worker side of a network embedder: decode (JPEG draft mode), resize the shorter side to
    `resize`, take the centre `crop` x `crop` (the usual ImageNet evaluation transform), uint8."""

    resize: int
    crop: int

    def __call__(self, data: bytes, thumbnail: Image.Image) -> np.ndarray:
        from pair_manifest.images import open_rgb

        image = open_rgb(data, max_side=2 * self.resize)
        scale = self.resize / min(image.size)
        width, height = max(self.crop, round(image.width * scale)), max(self.crop, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - self.crop) // 2, (height - self.crop) // 2
        return np.asarray(image.crop((left, top, left + self.crop, top + self.crop)), dtype=np.uint8)
