"""Exponential moving averages of networks (BYOL's target, DINO's teacher, MoCo's key encoder).

One fused update for all parameters: `torch._foreach_lerp_` launches a handful of kernels for the
whole network instead of one per tensor (ResNet-50 plus heads has ~160 parameter tensors), which
matters when a training step takes a few milliseconds.
"""
from __future__ import annotations

import torch
from torch import nn

from training.schedule import cosine


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter (in place).

    Both modules must have the same parameters in the same order (the target is a deep copy of the
    online network). Buffers are not averaged: BatchNorm statistics of a target come from its own
    forward passes, as in BYOL's and DINO's official code."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum: {momentum} is outside [0, 1]")
    targets = list(target.parameters())
    onlines = [p.detach() for p in online.parameters()]
    if len(targets) != len(onlines):
        raise ValueError(f"ema: target has {len(targets)} parameter tensors, online has {len(onlines)}")
    if momentum == 1.0:
        return
    torch._foreach_lerp_(targets, onlines, 1.0 - momentum)


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule (Grill et al. 2020, §3.2): tau = 1 - (1 - base) * (cos(pi * progress) + 1) / 2,
    from `base` at the start of training to 1 at the end; `progress` in [0, 1]."""
    return cosine(base, 1.0, progress)
