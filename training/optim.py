"""Optimizers of the methods' original recipes: LARS, SGD with momentum, AdamW.

Parameter groups follow the official code of each family:
- LARS (SimCLR, BYOL, Barlow Twins, VICReg, SwAV): biases and normalization parameters (every
  tensor with ndim <= 1) get neither weight decay nor the trust ratio (You et al. 2017; SimCLR's
  `lars_optimizer.py` EETA_DEFAULT=0.001 and its exclusion of 'batch_normalization' and 'bias').
- SGD (MoCo v2, SimSiam): plain momentum SGD with weight decay on every tensor, as their code.
- AdamW (DINO): no weight decay on biases and norms (DINO's `get_params_groups`).

LARS and SGD are written with `torch._foreach_*` ops only, reading the learning rate and weight
decay from the group, which may hold Python floats (eager) or 0-d device tensors updated in place
(when the whole step is captured in a CUDA graph): no host sync, a few fused launches per step.
Momentum buffers exist from construction (zeros), so there is no first-step branch to capture.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

OPTIMIZERS = ("lars", "sgd", "adamw")


class LARS(torch.optim.Optimizer):
    """SGD with momentum, and for groups with `lars=True` weight decay inside the layer-wise trust
    ratio: g <- g + wd*p; g <- g * eta*|p|/|g| (1 where either norm is 0); buf <- m*buf + g;
    p <- p - lr*buf. With `lars=False` it is momentum SGD (g <- g + wd*p; buf <- m*buf + g)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001, lars: bool = True):
        if lr < 0 or not 0.0 <= momentum < 1.0 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"LARS: bad settings lr={lr} momentum={momentum} weight_decay={weight_decay} eta={eta}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=lars))
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            wd, lr = group["weight_decay"], group["lr"]
            if isinstance(wd, torch.Tensor) or wd != 0:
                grads = torch._foreach_add(grads, torch._foreach_mul(params, wd))
            if group["lars"]:
                p_norm = torch.stack(torch._foreach_norm(params))
                g_norm = torch.stack(torch._foreach_norm(grads))
                trust = torch.where((p_norm > 0) & (g_norm > 0), group["eta"] * p_norm / g_norm,
                                    torch.ones_like(p_norm))
                grads = torch._foreach_mul(grads, list(trust.unbind()))
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            torch._foreach_add_(params, torch._foreach_mul(bufs, -lr) if isinstance(lr, torch.Tensor)
                                else torch._foreach_mul(bufs, -float(lr)))
        return loss


def split_decay(named: Iterable[tuple[str, nn.Parameter]]) -> tuple[list, list]:
    """(weights, biases_and_norms): tensors with ndim > 1 and the rest."""
    weights, others = [], []
    for _, p in named:
        if p.requires_grad:
            (weights if p.ndim > 1 else others).append(p)
    return weights, others


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    betas: tuple[float, float] = (0.9, 0.999), eta: float = 0.001,
                    capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer of a method's recipe over the trainable parameters of `model`."""
    weights, others = split_decay(model.named_parameters())
    if name == "lars":
        groups = [dict(params=weights, lars=True, weight_decay=weight_decay),
                  dict(params=others, lars=False, weight_decay=0.0)]
        return LARS([g for g in groups if g["params"]], lr=lr, momentum=momentum, eta=eta)
    if name == "sgd":
        return LARS([{"params": weights + others}], lr=lr, momentum=momentum, weight_decay=weight_decay,
                    lars=False)
    if name == "adamw":
        groups = [dict(params=weights, weight_decay=weight_decay), dict(params=others, weight_decay=0.0)]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, foreach=True,
                                 capturable=capturable)
    raise ValueError(f"optimizer: '{name}' is not one of {', '.join(OPTIMIZERS)}")
