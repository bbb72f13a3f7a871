"""The check every method's `forward(view_a, view_b)` starts with.

A batch of the wrong shape would otherwise fail deep inside a layer (or, for BatchNorm over one
image, train on NaNs); checked first, the error names the method and what it needs. Shapes are
Python values, so the check costs no host sync and is safe inside a CUDA-graph capture.
"""
from __future__ import annotations

import torch


def check_views(view_a: torch.Tensor, view_b: torch.Tensor, *, method: str = "", min_batch: int = 1,
                because: str = "") -> None:
    """view_a and view_b: (N, C, H, W) batches of one shape with N >= min_batch."""
    if view_a.ndim != 4 or view_a.shape != view_b.shape:
        raise ValueError("view_a and view_b must be (N, C, H, W) batches of one shape, got "
                         f"{tuple(view_a.shape)} and {tuple(view_b.shape)}")
    if view_a.shape[0] < min_batch:
        raise ValueError(f"{method} needs {min_batch} or more images per batch{because}, got {view_a.shape[0]}")
