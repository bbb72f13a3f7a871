"""Barlow Twins: redundancy reduction between the embeddings of two views.

Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021, arXiv:2103.03230. Official code: github.com/facebookresearch/barlowtwins,
`main.py` (class BarlowTwins, LARS, adjust_learning_rate).

The loss: standardize each embedding dimension over the batch (the official code's
`BatchNorm1d(affine=False)` in training mode: batch mean, biased variance, eps 1e-5), form the
D x D cross-correlation C = z_a^T z_b / N, and sum (1 - C_ii)^2 + λ Σ_{i≠j} C_ij^2. Under
DistributedDataParallel the embeddings are gathered from every rank first, which gives the same C
as the official SyncBatchNorm + `all_reduce(c)` over the global batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.distributed import gather_with_grad
from training.heads import widths_mlp
from training.precision import float32_loss
from training.recipe import Recipe, require_non_negative, require_positive, require_widths
from training.views import check_views


@dataclass(frozen=True)
class Hyperparameters:
    # λ, the weight of the redundancy-reduction term: main.py --lambd 0.0051 (the paper's
    # implementation details give "λ = 5·10^-3"; the code's tuned default is 0.0051).
    lambd: float = 0.0051
    # eps of the affine-free BatchNorm1d that standardizes the embeddings (PyTorch's default 1e-5).
    bn_eps: float = 1e-5
    # Projector "8192-8192-8192": the paper's "three linear layers, each with 8192 output units" and
    # main.py --projector (Linear without bias + BN + ReLU between, last Linear without bias).
    # Tests override it with small widths.
    projector: tuple[int, ...] = (8192, 8192, 8192)
    # Optimizer: the paper's implementation details and main.py: LARS (η = 0.001, momentum 0.9;
    # biases and BN parameters excluded from weight decay and from the LARS adaptation), learning
    # rate 0.2 for weights and 0.0048 for biases and BN parameters, both multiplied by batch/256,
    # weight decay 1.5e-6 (paper; main.py's default is 1e-6), 10 warm-up epochs then cosine decay
    # to 0.001 x the peak (adjust_learning_rate: end_lr = base_lr * 0.001).
    # base_lr_biases: for every 1-D parameter (biases, BatchNorm weights and biases).
    recipe: Recipe = Recipe(optimizer="lars", base_lr=0.2, base_lr_biases=0.0048, weight_decay=1.5e-6,
                            warmup_epochs=10, momentum=0.9, lars_eta=0.001, lars_exclude_bias_and_norm=True,
                            final_lr_ratio=0.001)

    def __post_init__(self):
        require_non_negative(self, "lambd")
        require_positive(self, "bn_eps")
        require_widths(self, "projector")


@float32_loss
def barlow_twins_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 0.0051, bn_eps: float = 1e-5
) -> torch.Tensor:
    """Σ_i (1 - C_ii)^2 + λ Σ_{i≠j} C_ij^2 with C the batch cross-correlation, in float32.

    z_a, z_b: (N, D) projector outputs of the two views, N >= 2.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must be (N, D) of the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.shape[0] < 2:
        raise ValueError(f"the batch needs at least 2 rows to standardize, got {z_a.shape[0]}")
    if bn_eps <= 0:
        raise ValueError(f"bn_eps: must be > 0, got {bn_eps}")
    n = z_a.shape[0]
    a = (z_a - z_a.mean(0)) / torch.sqrt(z_a.var(0, unbiased=False) + bn_eps)
    b = (z_b - z_b.mean(0)) / torch.sqrt(z_b.var(0, unbiased=False) + bn_eps)
    c = (a.T @ b) / n  # (D, D) cross-correlation
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


class Method(nn.Module):
    """Backbone + projector, trained with the Barlow Twins loss; the backbone is what gets evaluated."""

    capturable = True  # no host sync, no Python-side state in forward

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        self.backbone = backbone
        # main.py's projector: (Linear without bias, BatchNorm1d, ReLU) between layers, then a Linear without bias.
        self.projector = widths_mlp(feature_dim, tuple(hp.projector), hidden_bias=False)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        check_views(view_a, view_b, method="Barlow Twins", min_batch=2)
        # Two passes, as main.py: each branch's BatchNorm sees its own view's statistics.
        z_a = self.projector(self.backbone(view_a))  # (N, D)
        z_b = self.projector(self.backbone(view_b))
        return barlow_twins_loss(gather_with_grad(z_a), gather_with_grad(z_b), self.hp.lambd, self.hp.bn_eps)

    def update_targets(self, progress: float) -> None:
        """Barlow Twins has no target network and no schedule inside the method."""

    def eval_backbone(self) -> nn.Module:
        return self.backbone
