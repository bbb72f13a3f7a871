"""Which embedder a SPEC names, and loading it.

SPEC                             what
`pixels` (default)               colour, texture and layout statistics of the photo (`pixels.py`):
                                 no weights, offline, CPU, fast enough for the 243 k-image selection
`torchvision:NAME[@FILE]`        a torchvision classification model without its head; weights from
                                 FILE (a state dict), else torchvision's weights API (fetched once
                                 into torch's cache, `$TORCH_HOME/hub/checkpoints`)
`timm:NAME`                      a timm model (needs the `timm` package); weights fetched once from
                                 the Hugging Face Hub into its cache (`HF_ENDPOINT`, `HF_HOME` apply)
`checkpoint:RUN_DIR`             the evaluation backbone of a run of this project's `training`

Offline (`offline=True`, the `--offline` flag, or `HF_HUB_OFFLINE=1` in the environment): only
weights already in the caches are used, and a missing file is named with how to provide it.

The interface and the SPEC strings live in `embedding.py` (re-exported here); the torch kinds in
`torch_embedders.py`, imported only when such a SPEC is loaded, so importing this module never
imports torch.
"""
from __future__ import annotations

import os

from curation_app.proposals.embedding import (DEFAULT_SPEC, KINDS, CropPreparer, Embedder, EmbedderSpec, Preparer,
                                              parse_spec, safe_label)

__all__ = ["DEFAULT_SPEC", "KINDS", "CropPreparer", "Embedder", "EmbedderSpec", "Preparer", "load_embedder",
           "offline_by_default", "parse_spec", "safe_label"]


def offline_by_default() -> bool:
    """`HF_HUB_OFFLINE` set to a true value (the Hugging Face convention) means: download nothing."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_embedder(spec: EmbedderSpec | str, *, offline: bool | None = None) -> Embedder:
    """The embedder for a SPEC; a clear `UserError` when its weights or package are missing.
    `offline=None` follows `HF_HUB_OFFLINE`."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.kind == "pixels":
        return Embedder()
    from curation_app.proposals import torch_embedders  # imports torch

    offline = offline_by_default() if offline is None else offline
    if spec.kind == "checkpoint":
        return torch_embedders.checkpoint_embedder(spec)
    loader = torch_embedders.torchvision_embedder if spec.kind == "torchvision" else torch_embedders.timm_embedder
    return loader(spec, offline=offline)
