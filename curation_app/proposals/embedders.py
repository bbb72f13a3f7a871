"""Embedders behind one small interface, chosen by a SPEC string.

SPEC                             what
`pixels` (default)               centre-region colour/texture statistics (`pixels.py`): no weights,
                                 offline, CPU, fast enough for the 243 k-image selection
`torchvision:NAME[@FILE]`        a torchvision classification model without its head; weights from
                                 FILE (a state dict) or torch's cache; never downloaded
`timm:NAME`                      a timm model (needs the `timm` package and cached weights)
`checkpoint:RUN_DIR`             the evaluation backbone of a run of this project's `training`

An embedder gives each image an *object* vector. The *context* vector is always the pixels
description of the outer band (`pixels.py`), whatever the embedder: it is cheap, and one
definition of context keeps scores of different embedders comparable.

Work is split in two so that decoding runs in worker processes and a model runs once, batched,
in the main process: `prepare(data, thumbnail)` (picklable, worker side; `None` for `pixels`, whose
object vector is the centre description the worker computes anyway) and `embed(batch)`.
Importing this module never imports torch; `load_embedder` does, for the torch kinds only.
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
        raise UserError(f"--embedder '{text}': timm takes a model name only; its weights come from the cache")
    if at and not weights:
        raise UserError(f"--embedder '{text}': '@' must be followed by a weights file")
    return EmbedderSpec(kind, name, weights or None)


def safe_label(text: str) -> str:
    """A label fit for the decision source 'proposal:<label>:<rank>': no ':' and no spaces."""
    return re.sub(r"[:\s]+", "_", text)


class Embedder:
    """The interface (and the `pixels` embedder itself).

    `label` names the embedder in proposals.parquet and in decision sources; `cache_key` names
    the vectors (feature version, weights hash) so changed features are never mixed with stale
    ones; `standardize` is how scoring normalises object vectors within a class: `zscore` for
    the hand-made pixels features, whose dimensions have unrelated units (z-scored, colour and
    texture blocks weighted equally), `center` for network features (unit length, centred)."""

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


def load_embedder(spec: EmbedderSpec | str) -> Embedder:
    """The embedder for a SPEC; a clear `UserError` when its weights or package are missing."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.kind == "pixels":
        return Embedder()
    from curation_app.proposals import torch_embedders  # imports torch

    loaders = {"torchvision": torch_embedders.torchvision_embedder, "timm": torch_embedders.timm_embedder,
               "checkpoint": torch_embedders.checkpoint_embedder}
    return loaders[spec.kind](spec)
