"""Optimizers of the methods' original recipes: LARS, SGD with momentum, AdamW.

Parameter groups follow the official code of each family:
- LARS (SimCLR, BYOL, Barlow Twins, VICReg, SwAV): biases and normalization parameters (every
  tensor with ndim <= 1) get neither weight decay nor the trust ratio (You et al. 2017; SimCLR's
  `lars_optimizer.py` EETA_DEFAULT=0.001 and its exclusion of 'batch_normalization' and 'bias');
  a recipe that adapts them too (SwAV) sets `lars_exclude_bias_and_norm = False`.
- SGD (MoCo v2, SimSiam): plain momentum SGD with weight decay on every tensor, as their code.
- AdamW (DINO): no weight decay on biases and norms (DINO's `get_params_groups`).

LARS and SGD are written with `torch._foreach_*` ops only, reading the learning rate and weight
decay from the group, which may hold Python floats (eager) or 0-d device tensors updated in place
(when the whole step is captured in a CUDA graph): no host sync, a few fused launches per step.
Momentum buffers exist from construction (zeros), so there is no first-step branch to capture.
"""
from __future__ import annotations

import torch
from torch import nn

from training.recipe import Recipe


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


def param_groups(model: nn.Module, recipe: Recipe, peak_lr: float, lr_scale: float) -> list[dict]:
    """Trainable parameters split as the method's recipe needs, each group tagged with its peak lr,
    whether it follows the schedule, its weight decay and whether LARS adapts it.

    `peak_lr` is base_lr x lr_scale; `base_lr_biases` (if the recipe has it) is scaled alike."""
    optimizer = recipe.optimizer
    constant_modules = recipe.constant_lr_modules
    groups: dict[tuple[bool, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_1d = p.ndim <= 1
        constant = any(name == m or name.startswith(m + ".") for m in constant_modules)
        group = groups.get((is_1d, constant))
        if group is None:
            spared = is_1d and (optimizer == "adamw" or (optimizer == "lars" and recipe.lars_exclude_bias_and_norm))
            group = groups[(is_1d, constant)] = dict(
                params=[], name=f"{'1d' if is_1d else 'weights'}{'-constant' if constant else ''}",
                peak_lr=recipe.base_lr_biases * lr_scale if (is_1d and recipe.base_lr_biases is not None) else peak_lr,
                constant_lr=constant, weight_decay=0.0 if spared else float(recipe.weight_decay),
                lars=optimizer == "lars" and not spared)
        group["params"].append(p)
    for unused in [name for name in constant_modules
                   if not any(n == name or n.startswith(name + ".") for n, _ in model.named_parameters())]:
        raise ValueError(f"constant_lr_modules: the model has no submodule '{unused}'")
    for group in groups.values():
        group["base_weight_decay"] = group["weight_decay"]
        group["lr"] = group["peak_lr"]
    return list(groups.values())


def build_optimizer(model: nn.Module, recipe: Recipe, peak_lr: float, lr_scale: float,
                    capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer of a method's recipe over the trainable parameters of `model`."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"build_optimizer: expected a training.recipe.Recipe, got {type(recipe).__name__}")
    groups = param_groups(model, recipe, peak_lr, lr_scale)
    if recipe.optimizer in ("lars", "sgd"):
        return LARS(groups, lr=peak_lr, momentum=recipe.momentum, eta=recipe.lars_eta)
    return torch.optim.AdamW(groups, lr=peak_lr, betas=recipe.betas, foreach=True, capturable=capturable)
