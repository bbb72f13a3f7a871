"""Losses in float32 whatever the autocast dtype.

bf16 autocast makes the backbone fast, but softmax-over-batch (SimCLR, DINO, SwAV), covariance
(VICReg, Barlow Twins) and cosine terms lose accuracy in bf16: under autocast even an explicit
`.float()` is cast back to bf16 by the next matmul. `float32_loss` turns autocast off for the wrapped
function and casts its tensor arguments to float32, so a loss is computed exactly as its float64
reference (up to float32 rounding)."""
from __future__ import annotations

import functools

import torch


def float32_loss(fn):
    """Decorator: run `fn` with autocast disabled and its floating tensor arguments in float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"

        def to32(value):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return value.float()
            return value

        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*[to32(a) for a in args], **{k: to32(v) for k, v in kwargs.items()})

    return wrapper
