"""Self-supervised methods, one file each.

The contract every method module follows (no base class: a method is readable in one sitting):

- a frozen dataclass `Hyperparameters` holding the original paper's values, each cited, including
  the optimizer recipe it was published with: `optimizer` ("lars" | "sgd" | "adamw"), `base_lr`
  (scaled linearly by batch/256 unless the paper says otherwise), `weight_decay`, `warmup_epochs`,
  and whatever the loss needs (temperatures, EMA momentum, projector sizes);
- a pure loss function over embeddings (e.g. `simclr_loss(z_a, z_b, temperature)`), computed in
  float32 whatever the autocast dtype, unit-tested against a direct float64 implementation;
- an `nn.Module` named `Method` built as `Method(backbone, feature_dim, hp)` with
  `forward(view_a, view_b) -> loss` (a 0-d fp32 tensor; view_a and view_b are (N, 3, H, W) float
  batches, already augmented and normalized), `update_targets(progress)` (EMA teachers and
  momentum schedules; `progress` in [0, 1] is the fraction of training done; a no-op where the
  method has none) and `eval_backbone()` returning the network to evaluate (online network for
  BYOL and MoCo, teacher for DINO, the backbone otherwise).
"""
from __future__ import annotations

import importlib

METHODS = ("simclr", "byol", "dino", "vicreg", "mocov2", "simsiam", "barlow_twins", "swav")


def method_module(name: str):
    """The module of one method, imported on demand (so `--help` never imports torch)."""
    if name not in METHODS:
        raise ValueError(f"method: '{name}' is not one of {', '.join(METHODS)}")
    return importlib.import_module(f"training.methods.{name}")
