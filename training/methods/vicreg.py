"""VICReg: Variance-Invariance-Covariance Regularization.

Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
Learning", ICLR 2022, arXiv:2105.04906. Official code: github.com/facebookresearch/vicreg,
`main_vicreg.py` (class VICReg, Projector, LARS, adjust_learning_rate).

The loss follows `main_vicreg.py` line for line, including its one departure from the paper's
equation (1): the variance term is *averaged* over the two branches (`std_loss / 2 + std_loss / 2`)
while the covariance terms are summed; the published coefficients 25 / 25 / 1 were tuned with that
code, so summing the variance terms would silently double μ. Under DistributedDataParallel the
embeddings are gathered from every rank before the loss (the official FullGatherLayer), so the
variance and covariance are over the global batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.distributed import gather_with_grad
from training.heads import widths_mlp
from training.precision import float32_loss
from training.recipe import Recipe, require_non_negative, require_positive, require_widths
from training.views import check_views


@dataclass(frozen=True)
class Hyperparameters:
    # Loss coefficients λ (invariance), μ (variance), ν (covariance): the paper's implementation
    # details "λ = μ = 25 and ν = 1"; main_vicreg.py --sim-coeff 25 --std-coeff 25 --cov-coeff 1.
    sim_coeff: float = 25.0
    std_coeff: float = 25.0
    cov_coeff: float = 1.0
    # ε inside sqrt(Var + ε) of the variance hinge: main_vicreg.py `torch.sqrt(x.var(dim=0) + 0.0001)`
    # (paper eq. (1) writes ε = 0.0001 as well).
    variance_eps: float = 1e-4
    # Expander "8192-8192-8192": the paper and main_vicreg.py --mlp (Linear+BN+ReLU between
    # layers, last Linear without bias). Tests override it with small widths.
    projector: tuple[int, ...] = (8192, 8192, 8192)
    # Optimizer: the paper's implementation details and main_vicreg.py: LARS (η = 0.001, momentum 0.9, biases
    # and norm parameters excluded from weight decay and from the LARS adaptation), base lr 0.2
    # scaled by batch/256 (`--base-lr 0.2`, lr = base_lr * batch_size / 256), weight decay 1e-6
    # (`--wd 1e-6`), 10 warm-up epochs then cosine decay to 0.001 x the peak
    # (adjust_learning_rate: end_lr = base_lr * 0.001).
    recipe: Recipe = Recipe(optimizer="lars", base_lr=0.2, weight_decay=1e-6, warmup_epochs=10, momentum=0.9,
                            lars_eta=0.001, lars_exclude_bias_and_norm=True, final_lr_ratio=0.001)

    def __post_init__(self):
        require_non_negative(self, "sim_coeff", "std_coeff", "cov_coeff")
        require_positive(self, "variance_eps")
        require_widths(self, "projector")


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened (main_vicreg.py off_diagonal)."""
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


@float32_loss
def vicreg_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
    cov_coeff: float = 1.0, variance_eps: float = 1e-4,
) -> torch.Tensor:
    """λ·MSE(z_a, z_b) + μ·(v(z_a) + v(z_b))/2 + ν·(c(z_a) + c(z_b)), in float32.

    z_a, z_b: (N, D) expander outputs of the two views, N >= 2. v is the mean hinge
    max(0, 1 - sqrt(Var_j + ε)) over the D dimensions (unbiased variance over the batch); c is the
    sum of squared off-diagonal covariance entries divided by D.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must be (N, D) of the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.shape[0] < 2:
        raise ValueError(f"the batch needs at least 2 rows for a variance, got {z_a.shape[0]}")
    if variance_eps <= 0:
        raise ValueError(f"variance_eps: must be > 0, got {variance_eps}")
    x, y = z_a, z_b
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + variance_eps)
    std_y = torch.sqrt(y.var(dim=0) + variance_eps)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)  # (D, D)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = _off_diagonal(cov_x).pow(2).sum() / d + _off_diagonal(cov_y).pow(2).sum() / d
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


class Method(nn.Module):
    """Backbone + expander, trained with the VICReg loss; the backbone is what gets evaluated."""

    capturable = True  # no host sync, no Python-side state in forward

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        self.backbone = backbone
        # main_vicreg.py Projector: (Linear, BatchNorm1d, ReLU) between layers, last Linear without bias.
        self.projector = widths_mlp(feature_dim, tuple(hp.projector), hidden_bias=True)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        check_views(view_a, view_b, method="VICReg", min_batch=2, because=" for its variance")
        # Two passes, as main_vicreg.py: each branch's BatchNorm sees its own view's statistics.
        z_a = self.projector(self.backbone(view_a))  # (N, D)
        z_b = self.projector(self.backbone(view_b))
        # main_vicreg.py gathers both branches from every rank (FullGatherLayer) before the loss;
        # every rank then computes the same global loss (see training/distributed.py).
        hp = self.hp
        z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)
        return vicreg_loss(z_a, z_b, hp.sim_coeff, hp.std_coeff, hp.cov_coeff, hp.variance_eps)

    def update_targets(self, progress: float) -> None:
        """VICReg has no target network and no schedule inside the method."""

    def eval_backbone(self) -> nn.Module:
        return self.backbone
