"""SimSiam: Siamese networks with a predictor and a stop-gradient, no negatives, no momentum encoder.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, arXiv:2011.10566.
Official code: github.com/facebookresearch/simsiam, `simsiam/builder.py` (class SimSiam) and
`main_simsiam.py` (optimizer, --fix-pred-lr).

Loss (paper eq. (4), Algorithm 1): D(p_a, stopgrad(z_b)) / 2 + D(p_b, stopgrad(z_a)) / 2 with D the
negative cosine similarity. The stop-gradient is what prevents collapse (paper §4.1
"Stop-gradient", Fig. 2): the targets z are detached inside `simsiam_loss`, so no caller can forget it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.heads import mlp
from training.precision import float32_loss
from training.recipe import Recipe, require_count
from training.views import check_views


@dataclass(frozen=True)
class Hyperparameters:
    # Projector: 3 layers (Linear without bias + BN + ReLU twice, then Linear + BN without affine),
    # hidden width = the backbone's feature width (2048 for ResNet-50), output 2048: paper §3
    # "Baseline settings" and builder.py (`--dim 2048`). `projector_hidden = 0` means "the
    # backbone's feature width", as builder.py's prev_dim.
    projector_hidden: int = 0
    projector_dim: int = 2048
    # Predictor: 2048 -> 512 (BN + ReLU) -> 2048, a bottleneck: paper §3 "Baseline settings" and
    # builder.py (`--pred-dim 512`).
    predictor_hidden: int = 512
    # Optimizer: paper §3 "Baseline settings" and main_simsiam.py: SGD, momentum 0.9, lr = 0.05 x batch/256
    # (`--lr 0.05`, init_lr = args.lr * args.batch_size / 256), weight decay 1e-4, cosine decay,
    # no warm-up (the paper's batch is 512; warm-up is only used for its batch-4096 runs).
    # The predictor's learning rate is not decayed: paper Table 1 ("lr not decayed", 68.1% vs
    # 67.7%) and the official README's recipe `--fix-pred-lr`; the loop keeps the parameters whose
    # names start with one of `constant_lr_modules` at the peak learning rate.
    recipe: Recipe = Recipe(optimizer="sgd", base_lr=0.05, weight_decay=1e-4, warmup_epochs=0, momentum=0.9,
                            final_lr_ratio=0.0, constant_lr_modules=("predictor",))

    def __post_init__(self):
        require_count(self, "projector_hidden", minimum=0)
        require_count(self, "projector_dim", "predictor_hidden")


@float32_loss
def simsiam_loss(p_a: torch.Tensor, p_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """-(cos(p_a, sg(z_b)) + cos(p_b, sg(z_a))) / 2, batch-averaged, in float32; in [-1, 1].

    p_*: (N, D) predictor outputs; z_*: (N, D) projector outputs (detached here: the stop-gradient).
    """
    shapes = {tuple(t.shape) for t in (p_a, p_b, z_a, z_b)}
    if len(shapes) != 1 or p_a.ndim != 2:
        got = [tuple(t.shape) for t in (p_a, p_b, z_a, z_b)]
        raise ValueError(f"p_a, p_b, z_a, z_b must be (N, D) of one shape, got {got}")
    z_a, z_b = z_a.detach(), z_b.detach()  # the stop-gradient
    d_ab = -F.cosine_similarity(p_a, z_b, dim=-1).mean()  # D(p_a, z_b)
    d_ba = -F.cosine_similarity(p_b, z_a, dim=-1).mean()
    return 0.5 * d_ab + 0.5 * d_ba


class Method(nn.Module):
    """Backbone + projector + predictor; the backbone is what gets evaluated."""

    capturable = True  # no host sync, no Python-side state in forward

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        self.backbone = backbone
        hidden, dim = hp.projector_hidden or feature_dim, hp.projector_dim
        # builder.py's projection MLP; its last Linear has no bias because the BN after it removes it.
        self.projector = mlp((feature_dim, hidden, False, nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)),
                             (hidden, hidden, False, nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)),
                             (hidden, dim, False, nn.BatchNorm1d(dim, affine=False), None))
        # builder.py's bottleneck prediction MLP (no BN on its output).
        self.predictor = mlp((dim, hp.predictor_hidden, False, nn.BatchNorm1d(hp.predictor_hidden),
                              nn.ReLU(inplace=True)), (hp.predictor_hidden, dim, True, None, None))

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        check_views(view_a, view_b, method="SimSiam's BatchNorm", min_batch=2)
        # Two passes, as builder.py: each branch's BatchNorm sees its own view's statistics.
        z_a = self.projector(self.backbone(view_a))  # (N, D)
        z_b = self.projector(self.backbone(view_b))
        return simsiam_loss(self.predictor(z_a), self.predictor(z_b), z_a, z_b)

    def update_targets(self, progress: float) -> None:
        """SimSiam has no target network: the stop-gradient replaces it."""

    def eval_backbone(self) -> nn.Module:
        return self.backbone
