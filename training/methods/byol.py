"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
NeurIPS; official code github.com/deepmind/deepmind-research/tree/master/byol).

An online network (backbone, projector, predictor) predicts the projection a target network gives
the other view; the target is an exponential moving average of the online backbone and projector
and gets no gradient. The loss is symmetrized by swapping the views and the two terms are SUMMED
(§3.2 Eq. 2: L = L_theta + L~_theta; official `byol_experiment.py` adds both regression losses); a
mean would halve the effective learning rate. The ONLINE backbone is evaluated (§3.3: "we only keep
the encoder f_theta"), not the target.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.ema import cosine_momentum, ema_update_
from training.heads import mlp
from training.precision import float32_loss
from training.recipe import Recipe, require_count, require_fraction


@dataclass(frozen=True)
class Hyperparameters:
    # Projector and predictor: Linear(4096) - BN - ReLU - Linear(256) (§3.3 "Architecture").
    projection_hidden: int = 4096
    projection_dim: int = 256
    prediction_hidden: int = 4096
    # Target EMA: tau_base = 0.996, raised to 1 along a cosine over training (§3.3 "Optimization").
    base_momentum: float = 0.996
    # LARS, lr = 0.2 x BatchSize/256, weight decay 1.5e-6, biases and BN excluded from both,
    # 10 warmup epochs then cosine decay (§3.3 "Optimization").
    recipe: Recipe = Recipe(optimizer="lars", base_lr=0.2, weight_decay=1.5e-6, warmup_epochs=10, momentum=0.9)

    def __post_init__(self):
        require_count(self, "projection_hidden", "projection_dim", "prediction_hidden")
        require_fraction(self, "base_momentum")


def head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Projector and predictor alike: Linear - BN - ReLU - Linear (§3.3, J.3), biases kept."""
    return mlp((in_dim, hidden, True, nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)), (hidden, out_dim, True, None, None))


@float32_loss
def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One direction of BYOL's loss (Eq. 2): mean over the batch of
    ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z). prediction, target: (N, D); target carries no gradient."""
    if prediction.shape != target.shape or prediction.dim() != 2:
        raise ValueError(f"byol_loss: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} "
                         "must both be (N, D)")
    p = F.normalize(prediction, dim=1)
    z = F.normalize(target.detach(), dim=1)
    return (2.0 - 2.0 * (p * z).sum(dim=1)).mean()


class Method(nn.Module):
    """Online backbone + projector + predictor, EMA target backbone + projector."""

    capturable = True  # no host sync, no Python-side state in forward

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        self.backbone = backbone
        self.projector = head(feature_dim, hp.projection_hidden, hp.projection_dim)
        self.predictor = head(hp.projection_dim, hp.prediction_hidden, hp.projection_dim)
        # The target starts as a copy of the online network (official code initialises both alike).
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def _online(self, view: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.backbone(view)))

    @torch.no_grad()
    def _target(self, view: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(view))

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        # Each view is its own batch for BatchNorm, as the official code applies the network per view.
        p_a, p_b = self._online(view_a), self._online(view_b)
        z_a, z_b = self._target(view_a), self._target(view_b)
        return byol_loss(p_a, z_b) + byol_loss(p_b, z_a)  # summed, not averaged (see module docstring)

    def momentum(self, progress: float) -> float:
        return cosine_momentum(self.hp.base_momentum, progress)

    def update_targets(self, progress: float) -> None:
        """target <- tau * target + (1 - tau) * online, with tau from the cosine schedule."""
        tau = self.momentum(progress)
        ema_update_(self.target_backbone, self.backbone, tau)
        ema_update_(self.target_projector, self.projector, tau)

    def eval_backbone(self) -> nn.Module:
        return self.backbone  # the online encoder
