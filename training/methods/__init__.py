"""Self-supervised methods, one file each.

The contract every method module follows (no base class: a method is readable in one sitting):

- a frozen dataclass `Hyperparameters` holding the original paper's values, each cited: the
  method's own (temperatures, EMA momentum, projector sizes), range-checked in `__post_init__`
  with the `training.recipe.require_*` helpers, and `recipe: Recipe = Recipe(...)`, the optimizer
  recipe it was published with (`training/recipe.py`: optimizer "lars" | "sgd" | "adamw",
  `base_lr` scaled linearly by batch/256, weight decay, warm-up epochs, and the optional pieces:
  momentum, betas, LARS trust coefficient and exclusions, the cosine's end (`final_lr_ratio` or
  `min_lr`), `base_lr_biases`, `constant_lr_modules`, a weight-decay schedule, gradient clipping).
  A misspelt recipe field is a TypeError at import; the loop reads `hp.recipe.x`, never a default.
  Where the paper gives one recipe per architecture, an optional `default_hyperparameters(backbone)`
  picks it (DINO);
- a pure loss function over embeddings (e.g. `simclr_loss(z_a, z_b, temperature)`), computed in
  float32 whatever the autocast dtype, unit-tested against a direct float64 implementation;
- an `nn.Module` named `Method` built as `Method(backbone, feature_dim, hp)` with
  `forward(view_a, view_b) -> loss` (a 0-d fp32 tensor; view_a and view_b are (N, 3, H, W) float
  batches, already augmented and normalized), `update_targets(progress)` (EMA teachers and
  momentum schedules; `progress` in [0, 1] is the fraction of training done; a no-op where the
  method has none) and `eval_backbone()` returning the network to evaluate (online network for
  BYOL and MoCo, teacher for DINO, the backbone otherwise); its heads built with
  `training.heads.mlp` from the blocks of the official code.

What the training loop (training/loop.py, training/optim.py) also reads:
- a class attribute `capturable = True` when `forward` does no host sync (`.item()`, `bool(t)`,
  data-dependent shapes) and keeps no Python-side state that changes between steps: only then may
  the loop capture forward + backward + optimizer step in one CUDA graph (`--cuda-graphs`).
  State changed in `update_targets` is fine for the graph only if it lives in tensors updated in
  place.

Helpers a method may use: `training.views.check_views` (the shape check `forward` starts with),
`training.precision.float32_loss` (decorator: the loss runs with autocast off, arguments in
float32), `training.distributed.gather_with_grad` (the global batch
under DDP, exact gradients on gloo and NCCL), `training.distributed.all_reduce_mean_`,
`training.ema.ema_update_` (one fused `torch._foreach_lerp_` for a whole network) and
`training.ema.cosine_momentum`. Under DDP the loop converts every BatchNorm to
`training.distributed.GlobalBatchNorm` (statistics over the global batch, CPU and GPU).
"""
from __future__ import annotations

import importlib

from pair_manifest.protocol import METHODS


def method_module(name: str):
    """The module of one method, imported on demand (so `--help` never imports torch)."""
    if name not in METHODS:
        raise ValueError(f"method: '{name}' is not one of {', '.join(METHODS)}")
    return importlib.import_module(f"training.methods.{name}")
