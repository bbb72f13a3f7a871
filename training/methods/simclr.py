"""SimCLR (Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML; official code github.com/google-research/simclr).

Two views of each pair go through the backbone f and a projection MLP g; the NT-Xent loss pulls the
two projections of a pair together and pushes them away from the other 2N-2 projections of the batch
(the negatives). The backbone f is what is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.distributed import gather_with_grad
from training.heads import mlp
from training.precision import float32_loss
from training.recipe import Recipe, require_count, require_positive


@dataclass(frozen=True)
class Hyperparameters:
    # NT-Xent temperature: 0.1, the paper's best for ImageNet (§5.1, Table 5; `--temperature=0.1`
    # in the official ImageNet commands).
    temperature: float = 0.1
    # Projection head g: "MLP with one hidden layer" (§2.1), hidden width = the backbone's output
    # width (2048 for ResNet-50; None means "same as the backbone"), output 128 (§B.1, Fig. 8).
    projection_hidden: int | None = None
    projection_dim: int = 128
    # Optimizer (§B.6 and Appendix B.9): LARS, lr = 0.3 x BatchSize/256, weight decay 1e-6,
    # momentum 0.9, 10 warmup epochs then cosine decay without restarts.
    recipe: Recipe = Recipe(optimizer="lars", base_lr=0.3, weight_decay=1e-6, warmup_epochs=10, momentum=0.9)

    def __post_init__(self):
        require_positive(self, "temperature")
        require_count(self, "projection_hidden", optional=True)
        require_count(self, "projection_dim")


@float32_loss
def simclr_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020, Eq. 1), averaged over all 2N anchors.

    z_a, z_b: (N, D) projections of the two views of N pairs; row i of z_a and row i of z_b are a
    positive pair, every other row of either is a negative."""
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"simclr_loss: z_a {tuple(z_a.shape)} and z_b {tuple(z_b.shape)} must both be (N, D)")
    if temperature <= 0:
        raise ValueError(f"temperature: {temperature} must be > 0")
    n = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)  # (2N, D)
    logits = z @ z.t() / temperature  # (2N, 2N) cosine similarities / tau
    logits.fill_diagonal_(float("-inf"))  # an anchor is not its own negative
    idx = torch.arange(2 * n, device=z.device)  # made on the device: no copy inside a CUDA graph
    positives = (idx + n) % (2 * n)  # the other view of the same pair
    return F.cross_entropy(logits, positives)


class Method(nn.Module):
    """Backbone + projection head; `forward(view_a, view_b)` returns the NT-Xent loss."""

    # No host sync and no Python-side state in forward: the loop may capture the step in a CUDA graph.
    capturable = True

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        hidden = hp.projection_hidden or feature_dim
        self.backbone = backbone
        # Official code (`model_util.projection_head`, v1 = 2 layers): every linear layer is followed
        # by BatchNorm, linear layers have no bias, the last BatchNorm has no shift (center=False).
        self.projector = mlp((feature_dim, hidden, False, nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)),
                             (hidden, hp.projection_dim, False, nn.BatchNorm1d(hp.projection_dim), None))
        self.projector[-1].bias.requires_grad_(False)  # scale only, as center=False

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        # One backbone pass over both views, as the official code (BatchNorm sees all 2N images).
        z = self.projector(self.backbone(torch.cat([view_a, view_b])))  # (2N, D)
        z_a, z_b = z.chunk(2)
        # Negatives come from the global batch under DDP (the official code's cross-replica gather).
        return simclr_loss(gather_with_grad(z_a), gather_with_grad(z_b), self.hp.temperature)

    def update_targets(self, progress: float) -> None:
        """SimCLR has no target network."""

    def eval_backbone(self) -> nn.Module:
        return self.backbone
